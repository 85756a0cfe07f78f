//! Every string the console shows, in English and French, in one table.
//! The language comes from the `lang` cookie, else the browser's
//! Accept-Language, else English.

use std::collections::HashMap;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "fr" => Some(Lang::Fr),
            _ => None,
        }
    }

    /// From the `lang` cookie, else the first supported language of an
    /// Accept-Language header (order of preference), else English.
    pub fn pick(cookie: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(l) = cookie.and_then(Lang::parse) {
            return l;
        }
        for part in accept_language.unwrap_or_default().split(',') {
            let tag = part.split(';').next().unwrap_or_default().trim();
            let primary = tag
                .split('-')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if let Some(l) = Lang::parse(&primary) {
                return l;
            }
        }
        Lang::En
    }

    /// The string for `key`; the key itself when it is missing (a test
    /// checks that every key written out in the console's code is in the
    /// table, with both languages).
    pub fn t(self, key: &'static str) -> &'static str {
        match STRINGS.get(key) {
            Some((en, fr)) => match self {
                Lang::En => en,
                Lang::Fr => fr,
            },
            None => key,
        }
    }
}

static STRINGS: LazyLock<HashMap<&'static str, (&'static str, &'static str)>> =
    LazyLock::new(|| TABLE.iter().map(|(k, en, fr)| (*k, (*en, *fr))).collect());

/// (key, English, French)
pub const TABLE: &[(&str, &str, &str)] = &[
    ("app", "Vigie console", "Console Vigie"),
    ("skip", "Skip to content", "Aller au contenu"),
    ("nav", "Main menu", "Menu principal"),
    ("dashboard", "Dashboard", "Tableau de bord"),
    ("hosts", "Hosts", "Machines"),
    ("alerts", "Alerts", "Alertes"),
    ("incidents", "Incidents", "Incidents"),
    ("rules", "Rules", "Règles"),
    ("policies", "Policies", "Politiques"),
    ("vpn_users", "VPN users", "Utilisateurs VPN"),
    ("audit", "Audit log", "Journal d'audit"),
    ("settings", "Settings", "Paramètres"),
    ("logout", "Log out", "Se déconnecter"),
    ("language", "Language", "Langue"),
    ("signed_in_as", "Signed in as", "Connecté en tant que"),
    // login
    ("login", "Log in", "Connexion"),
    ("username", "User name", "Nom d'utilisateur"),
    ("password", "Password", "Mot de passe"),
    (
        "login_failed",
        "Wrong user name or password, or the account is locked for a while.",
        "Nom d'utilisateur ou mot de passe incorrect, ou compte verrouillé pour un moment.",
    ),
    ("totp_title", "Second factor", "Second facteur"),
    (
        "totp_code",
        "6-digit code from your authenticator app",
        "Code à 6 chiffres de votre application d'authentification",
    ),
    (
        "totp_failed",
        "Wrong or already used code.",
        "Code incorrect ou déjà utilisé.",
    ),
    (
        "totp_enrol_title",
        "Set up your authenticator app",
        "Configurez votre application d'authentification",
    ),
    (
        "totp_enrol_help",
        "Administrators need a second factor. Scan this QR code with an authenticator app (or type the secret), then enter the code it shows.",
        "Les administrateurs ont besoin d'un second facteur. Scannez ce QR code avec une application d'authentification (ou saisissez le secret), puis entrez le code affiché.",
    ),
    ("secret", "Secret", "Secret"),
    ("confirm", "Confirm", "Confirmer"),
    (
        "csrf_refused",
        "This form has expired or did not come from this console. Reload the page and try again.",
        "Ce formulaire a expiré ou ne vient pas de cette console. Rechargez la page et réessayez.",
    ),
    (
        "forbidden",
        "Your role does not allow this action.",
        "Votre rôle ne permet pas cette action.",
    ),
    ("not_found", "Not found.", "Introuvable."),
    (
        "error",
        "Something went wrong; the manager's log says more.",
        "Une erreur est survenue ; le journal du manager en dit plus.",
    ),
    // dashboard
    ("online", "Online", "En ligne"),
    ("offline", "Offline", "Hors ligne"),
    ("isolated", "Isolated", "Isolée"),
    ("not_isolated", "Not isolated", "Non isolée"),
    (
        "alerts_24h",
        "Alerts, last 24 hours",
        "Alertes, dernières 24 heures",
    ),
    (
        "alerts_7d",
        "Alerts, last 7 days",
        "Alertes, 7 derniers jours",
    ),
    ("open_incidents", "Open incidents", "Incidents ouverts"),
    ("level", "Level", "Niveau"),
    ("count", "Count", "Nombre"),
    ("none", "None.", "Aucun."),
    // hosts
    ("hostname", "Host name", "Nom de la machine"),
    ("status", "Status", "État"),
    ("last_seen", "Last seen", "Vu la dernière fois"),
    ("never", "never", "jamais"),
    ("os", "System", "Système"),
    ("agent_version", "Agent version", "Version de l'agent"),
    ("search", "Search", "Rechercher"),
    ("filter", "Filter", "Filtrer"),
    ("all", "All", "Tous"),
    ("facts", "Facts", "Caractéristiques"),
    ("addresses", "Addresses", "Adresses"),
    ("kernel", "Kernel", "Noyau"),
    ("group", "Group", "Groupe"),
    ("sensor_health", "Sensor health", "État du capteur"),
    (
        "events_lost",
        "Events lost by the sensor",
        "Événements perdus par le capteur",
    ),
    (
        "spool",
        "Spool (pending / dropped)",
        "File d'attente (en attente / perdus)",
    ),
    ("isolate", "Isolate this host", "Isoler cette machine"),
    ("release", "Release this host", "Libérer cette machine"),
    (
        "isolate_help",
        "Isolation cuts every network connection except to this manager. The agent confirms it is in place.",
        "L'isolement coupe toute connexion réseau sauf vers ce manager. L'agent confirme qu'il est en place.",
    ),
    (
        "reason",
        "Reason (kept in the audit log)",
        "Raison (conservée dans le journal d'audit)",
    ),
    (
        "confirm_isolate",
        "I confirm: isolate this host now",
        "Je confirme : isoler cette machine maintenant",
    ),
    (
        "confirm_release",
        "I confirm: release this host now",
        "Je confirme : libérer cette machine maintenant",
    ),
    (
        "need_confirm",
        "Tick the confirmation box and give a reason.",
        "Cochez la case de confirmation et donnez une raison.",
    ),
    (
        "cmd_succeeded",
        "Done, and verified by the agent:",
        "Fait, et vérifié par l'agent :",
    ),
    (
        "cmd_failed",
        "The agent could not do it:",
        "L'agent n'a pas pu le faire :",
    ),
    (
        "cmd_pending",
        "Sent; the agent has not confirmed yet. This page will show the outcome when it does.",
        "Envoyé ; l'agent n'a pas encore confirmé. Cette page affichera le résultat.",
    ),
    (
        "offline_release",
        "This host is offline: the release above waits until it reconnects. To release it now, get a release code and give it to the person at the machine (by phone); they type it as root: `vigie agent release --code CODE`.",
        "Cette machine est hors ligne : la libération ci-dessus attend qu'elle se reconnecte. Pour la libérer tout de suite, demandez un code de libération et donnez-le à la personne devant la machine (par téléphone) ; elle le saisit en root : `vigie agent release --code CODE`.",
    ),
    (
        "get_code",
        "Get a release code",
        "Obtenir un code de libération",
    ),
    ("release_code", "Release code", "Code de libération"),
    ("ptree_title", "Process tree", "Arbre des processus"),
    (
        "ptree_help",
        "Every program started on this host in the window, under the program that started it. Programs that raised an alert are framed in red; programs started before the window are shown with …",
        "Tous les programmes lancés sur cette machine pendant la période, sous le programme qui les a lancés. Ceux qui ont levé une alerte sont encadrés en rouge ; ceux lancés avant la période sont marqués …",
    ),
    ("ptree_search", "Search", "Rechercher"),
    ("ptree_minutes", "Minutes before", "Minutes avant"),
    ("ptree_show", "Show", "Afficher"),
    ("ptree_processes", "programs started", "programmes lancés"),
    (
        "ptree_truncated",
        "only the latest 5,000: narrow the window",
        "seulement les 5 000 derniers : réduisez la période",
    ),
    (
        "release_code_help",
        "On the host, as root, type the command below. The code works without the network, this hour and the next; asking for it is recorded in the audit log.",
        "Sur la machine, en root, tapez la commande ci-dessous. Le code fonctionne sans réseau, pendant cette heure et la suivante ; sa demande est inscrite au journal d'audit.",
    ),
    ("valid_until", "Valid until", "Valable jusqu'à"),
    (
        "no_release_secret",
        "This agent enrolled before the manager kept release secrets: re-enrol it, or read the code on the host with `vigie agent release-code`.",
        "Cet agent s'est inscrit avant que le manager ne garde les secrets de libération : réinscrivez-le, ou lisez le code sur la machine avec `vigie agent release-code`.",
    ),
    ("recent_alerts", "Recent alerts", "Alertes récentes"),
    ("timeline", "Timeline", "Chronologie"),
    ("actions_taken", "Actions taken", "Actions menées"),
    ("time", "Time", "Heure"),
    ("event", "Event", "Événement"),
    ("process", "Process", "Processus"),
    ("user", "User", "Utilisateur"),
    ("action", "Action", "Action"),
    ("actor", "Who", "Qui"),
    ("outcome", "Outcome", "Résultat"),
    ("target", "Target", "Cible"),
    // alerts
    ("rule", "Rule", "Règle"),
    ("host", "Host", "Machine"),
    ("assignee", "Assigned to", "Assignée à"),
    ("verdict", "Verdict", "Verdict"),
    ("new", "New", "Nouvelle"),
    ("acknowledged", "Acknowledged", "Prise en compte"),
    ("closed", "Closed", "Fermée"),
    ("true_positive", "True positive", "Vrai positif"),
    ("false_positive", "False positive", "Faux positif"),
    ("benign", "Benign", "Bénigne"),
    ("acknowledge", "Acknowledge", "Prendre en compte"),
    ("close", "Close", "Fermer"),
    ("assign", "Assign", "Assigner"),
    ("rule_groups", "Host groups", "Groupes de postes"),
    ("all_groups", "all groups", "tous les groupes"),
    (
        "rule_groups_help",
        "Comma-separated host groups that get this rule; empty for every group",
        "Groupes de postes qui reçoivent cette règle, séparés par des virgules ; vide pour tous",
    ),
    ("comment", "Comment", "Commentaire"),
    ("comments", "Comments", "Commentaires"),
    ("apply", "Apply", "Appliquer"),
    (
        "bulk",
        "With the selected alerts",
        "Avec les alertes sélectionnées",
    ),
    ("select", "Select", "Sélectionner"),
    ("select_all", "Select all", "Tout sélectionner"),
    ("min_level", "Minimum level", "Niveau minimal"),
    ("older", "Older alerts", "Alertes plus anciennes"),
    ("what_happened", "What happened", "Ce qui s'est passé"),
    (
        "what_vigie_did",
        "What Vigie already did",
        "Ce que Vigie a déjà fait",
    ),
    ("what_next", "What to do now", "Que faire maintenant"),
    (
        "nothing_done",
        "Nothing yet: no automatic or manual action on this host since the alert.",
        "Rien pour l'instant : aucune action automatique ou manuelle sur cette machine depuis l'alerte.",
    ),
    (
        "next_high",
        "Isolate the host now (button on the host page), then look at the process tree below: which program started the culprit, and what it did next. Keep the host isolated until you understand how it got there.",
        "Isolez la machine maintenant (bouton sur la page de la machine), puis regardez l'arbre des processus ci-dessous : quel programme a lancé le coupable, et ce qu'il a fait ensuite. Gardez la machine isolée tant que vous ne comprenez pas comment c'est arrivé.",
    ),
    (
        "next_low",
        "Check with the machine's user whether they did this on purpose. If yes, close the alert as benign; if not, isolate the host.",
        "Vérifiez avec l'utilisateur de la machine s'il l'a fait volontairement. Si oui, fermez l'alerte comme bénigne ; sinon, isolez la machine.",
    ),
    ("rule_description", "About the rule", "À propos de la règle"),
    ("references", "References", "Références"),
    ("attack", "MITRE ATT&CK technique", "Technique MITRE ATT&CK"),
    (
        "false_positives",
        "Known false positives",
        "Faux positifs connus",
    ),
    ("process_tree", "Process tree", "Arbre des processus"),
    ("culprit", "culprit", "coupable"),
    ("triage", "Triage", "Traitement"),
    ("save", "Save", "Enregistrer"),
    ("updated", "Saved.", "Enregistré."),
    ("incident", "Incident", "Incident"),
    ("export", "Export (JSON)", "Exporter (JSON)"),
    ("first_seen", "First", "Début"),
    ("last", "Last", "Fin"),
    ("title", "Title", "Titre"),
    // rules
    (
        "upload_rule",
        "Upload a Sigma rule",
        "Téléverser une règle Sigma",
    ),
    ("rule_source", "Sigma rule (YAML)", "Règle Sigma (YAML)"),
    ("rule_file", "or choose a file", "ou choisissez un fichier"),
    (
        "validate_save",
        "Validate and save",
        "Valider et enregistrer",
    ),
    (
        "rule_errors",
        "The rule was not saved:",
        "La règle n'a pas été enregistrée :",
    ),
    (
        "rule_saved",
        "Rule validated and saved.",
        "Règle validée et enregistrée.",
    ),
    ("line", "line", "ligne"),
    ("enabled", "Enabled", "Activée"),
    ("disabled", "Disabled", "Désactivée"),
    ("enable", "Enable", "Activer"),
    ("disable", "Disable", "Désactiver"),
    ("uploaded_by", "Uploaded by", "Téléversée par"),
    // VPN users
    (
        "create_user",
        "Create a VPN user",
        "Créer un utilisateur VPN",
    ),
    ("enrol", "Enrol (new QR code)", "Enrôler (nouveau QR code)"),
    (
        "reset",
        "Reset second factor",
        "Réinitialiser le second facteur",
    ),
    ("unlock", "Unlock", "Déverrouiller"),
    ("locked_until", "Locked until", "Verrouillé jusqu'à"),
    ("not_locked", "Not locked", "Non verrouillé"),
    ("enrolled", "Enrolled", "Enrôlé"),
    ("not_enrolled", "Not enrolled", "Non enrôlé"),
    ("failures", "Recent failures", "Échecs récents"),
    ("second_factor_col", "Second factor", "Second facteur"),
    (
        "enrol_for",
        "Scan this QR code with the authenticator app of",
        "Scannez ce QR code avec l'application d'authentification de",
    ),
    (
        "enrol_once",
        "It is shown once: the secret is stored encrypted and cannot be shown again.",
        "Il n'est affiché qu'une fois : le secret est stocké chiffré et ne peut plus être affiché.",
    ),
    (
        "qr_code",
        "QR code for the authenticator app",
        "QR code pour l'application d'authentification",
    ),
    ("backend", "Password checked by", "Mot de passe vérifié par"),
    (
        "local_password",
        "Local password (leave empty for LDAP / Active Directory)",
        "Mot de passe local (vide pour LDAP / Active Directory)",
    ),
    ("create", "Create", "Créer"),
    ("done", "Done.", "Fait."),
    // policies and settings
    (
        "policies_help",
        "Automatic response follows the policy of each host's group. Protected groups are never isolated automatically.",
        "La réponse automatique suit la politique du groupe de chaque machine. Les groupes protégés ne sont jamais isolés automatiquement.",
    ),
    ("policy", "Automatic response", "Réponse automatique"),
    ("alert_only", "Alert only", "Alerte seulement"),
    ("kill", "Kill the process tree", "Tuer l'arbre de processus"),
    ("isolate_auto", "Isolate the host", "Isoler la machine"),
    ("host_count", "Hosts", "Machines"),
    (
        "retention_days",
        "Keep telemetry for (days)",
        "Conserver la télémétrie (jours)",
    ),
    (
        "webhook",
        "Webhook URL for alerts (Slack, Mattermost, Teams)",
        "URL de webhook pour les alertes (Slack, Mattermost, Teams)",
    ),
    (
        "notify_level",
        "Notify from level",
        "Notifier à partir du niveau",
    ),
    ("email", "Email", "Courriel"),
    (
        "email_to",
        "Send alerts to (addresses, comma-separated)",
        "Envoyer les alertes à (adresses, séparées par des virgules)",
    ),
    ("email_from", "Sender address", "Adresse de l'expéditeur"),
    (
        "smtp_url",
        "SMTP server (smtp://host:25, smtp://host:587?tls=required, smtps://host)",
        "Serveur SMTP (smtp://hôte:25, smtp://hôte:587?tls=required, smtps://hôte)",
    ),
    ("smtp_user", "SMTP user name", "Utilisateur SMTP"),
    ("smtp_password", "SMTP password", "Mot de passe SMTP"),
    (
        "secret_kept",
        "set; leave empty to keep",
        "défini ; laisser vide pour le garder",
    ),
    ("syslog", "Syslog to a SIEM", "Syslog vers un SIEM"),
    (
        "syslog_url",
        "Syslog server (udp://host:514 or tcp://host:514)",
        "Serveur syslog (udp://hôte:514 ou tcp://hôte:514)",
    ),
    ("syslog_format", "Message format", "Format des messages"),
    (
        "syslog_level",
        "Forward from level",
        "Transférer à partir du niveau",
    ),
    (
        "console_url",
        "Console address, for links in notifications",
        "Adresse de la console, pour les liens des notifications",
    ),
    // incident report
    ("report", "Incident report", "Rapport d'incident"),
    ("rep_link", "Report", "Rapport"),
    (
        "rep_generated",
        "Generated on {time} by {who}, from Vigie's database. Times are UTC.",
        "Généré le {time} par {who}, à partir de la base de Vigie. Heures en UTC.",
    ),
    (
        "rep_print_hint",
        "To print it or save it as PDF, use the browser's Print command (Ctrl+P); this bar is not printed.",
        "Pour l'imprimer ou l'enregistrer en PDF, utilisez la commande Imprimer du navigateur (Ctrl+P) ; ce bandeau n'est pas imprimé.",
    ),
    ("rep_back", "Back to the incident", "Retour à l'incident"),
    ("rep_open", "open", "ouvert"),
    ("rep_summary", "1. Summary", "1. Résumé"),
    (
        "rep_what",
        "Vigie raised {n} alert(s) on {host} between {first} and {last}. The most serious: \u{201c}{rule}\u{201d} (level {level}).",
        "Vigie a levé {n} alerte(s) sur {host} entre le {first} et le {last}. La plus grave : \u{ab}\u{a0}{rule}\u{a0}\u{bb} (niveau {level}).",
    ),
    (
        "rep_where",
        "Host(s) involved: {hosts}.",
        "Machine(s) concernée(s) : {hosts}.",
    ),
    (
        "rep_related_count",
        "{n} alert(s) on other hosts of the organisation around the same time (from one hour before to one hour after) are shown as related activity: an attack on the VPN often comes before the attack on a server.",
        "{n} alerte(s) sur d'autres machines de l'organisation à la même période (d'une heure avant à une heure après) sont montrées comme activité liée : l'attaque du VPN précède souvent celle d'un serveur.",
    ),
    (
        "rep_status",
        "Status of the incident: {status}. The host now: {isolation}.",
        "État de l'incident : {status}. La machine maintenant : {isolation}.",
    ),
    ("rep_timeline", "2. Timeline", "2. Chronologie"),
    (
        "rep_timeline_help",
        "Every alert of the incident and every action on the host, in time order. Rows marked \u{201c}related\u{201d} are alerts of other hosts of the organisation (such as the VPN service) from one hour before the first alert to one hour after the last.",
        "Chaque alerte de l'incident et chaque action sur la machine, dans l'ordre chronologique. Les lignes marquées \u{ab}\u{a0}liée\u{a0}\u{bb} sont des alertes d'autres machines de l'organisation (comme le service VPN), d'une heure avant la première alerte à une heure après la dernière.",
    ),
    ("rep_related", "related", "liée"),
    ("rep_entry", "Entry", "Entrée"),
    ("rep_details", "Details", "Détails"),
    (
        "rep_involved",
        "3. Hosts, accounts and indicators",
        "3. Machines, comptes et indicateurs",
    ),
    ("rep_hosts", "Hosts involved", "Machines concernées"),
    ("rep_accounts", "Accounts involved", "Comptes concernés"),
    ("rep_account_kind", "Kind", "Type"),
    ("rep_local_account", "local account", "compte local"),
    ("rep_vpn_account", "VPN account", "compte VPN"),
    ("rep_other_account", "other account", "autre compte"),
    ("rep_seen_on", "Seen on", "Vu sur"),
    (
        "rep_indicators",
        "Indicators (deduplicated)",
        "Indicateurs (sans doublons)",
    ),
    (
        "rep_executables",
        "Executables (SHA-256)",
        "Exécutables (SHA-256)",
    ),
    (
        "rep_remote",
        "Remote addresses and ports",
        "Adresses et ports distants",
    ),
    ("rep_domains", "Domains", "Domaines"),
    (
        "rep_files",
        "Files written, renamed or deleted",
        "Fichiers écrits, renommés ou supprimés",
    ),
    (
        "rep_sha_unknown",
        "SHA-256 not recorded",
        "SHA-256 non relevé",
    ),
    ("rep_actions", "4. Actions taken", "4. Actions menées"),
    (
        "rep_actions_help",
        "From the audit log: who did what and why, and the outcome the agent verified.",
        "D'après le journal d'audit : qui a fait quoi et pourquoi, et le résultat vérifié par l'agent.",
    ),
    (
        "rep_cnil",
        "5. Personal-data breach notification (CNIL, GDPR art. 33)",
        "5. Notification de violation de données personnelles (CNIL, RGPD art. 33)",
    ),
    (
        "rep_cnil_intro",
        "The facts the CNIL's notification form asks for. Vigie pre-filled what it knows; what is marked \u{201c}To complete\u{201d} must be filled in by a person (the data controller or its DPO). A breach likely to result in a risk to people's rights and freedoms must be notified to the CNIL within 72 hours of becoming aware of it (GDPR art. 33), from the CNIL's site.",
        "Les éléments que demande le formulaire de notification de la CNIL. Vigie a pré-rempli ce qu'il sait ; ce qui est marqué \u{ab}\u{a0}À compléter\u{a0}\u{bb} doit être renseigné par une personne (le responsable de traitement ou son DPO). Une violation susceptible d'engendrer un risque pour les droits et libertés des personnes doit être notifiée à la CNIL dans les 72 heures après en avoir pris connaissance (RGPD art. 33), depuis le site de la CNIL.",
    ),
    (
        "rep_deadline",
        "Deadline to notify the CNIL (72 hours after the first alert)",
        "Date limite de notification à la CNIL (72 heures après la première alerte)",
    ),
    (
        "rep_deadline_late",
        "If the notification is made later, it must give the reasons for the delay.",
        "Si la notification est faite plus tard, elle doit indiquer les raisons du retard.",
    ),
    ("rep_to_complete", "To complete", "À compléter"),
    (
        "rep_nature",
        "Nature of the breach",
        "Nature de la violation",
    ),
    (
        "rep_confidentiality",
        "Loss of confidentiality (data disclosed or accessed without authorisation)",
        "Perte de confidentialité (données divulguées ou consultées sans autorisation)",
    ),
    (
        "rep_integrity",
        "Loss of integrity (data altered)",
        "Perte d'intégrité (données modifiées)",
    ),
    (
        "rep_availability",
        "Loss of availability (data or service unavailable or destroyed)",
        "Perte de disponibilité (données ou service indisponibles ou détruits)",
    ),
    (
        "rep_yes_ransomware",
        "Yes: ransomware behaviour was detected (files encrypted, or backups deleted).",
        "Oui : un comportement de rançongiciel a été détecté (fichiers chiffrés, ou sauvegardes supprimées).",
    ),
    (
        "rep_yes_isolated",
        "Yes, for the services of the host Vigie isolated from the network.",
        "Oui, pour les services de la machine que Vigie a isolée du réseau.",
    ),
    ("rep_to_assess", "to be assessed.", "à évaluer."),
    (
        "rep_circumstances",
        "Circumstances (how it happened)",
        "Circonstances (comment c'est arrivé)",
    ),
    (
        "rep_circ_prefill",
        "Malicious act detected by Vigie: {rules}. MITRE ATT&CK techniques: {attack}.",
        "Acte malveillant détecté par Vigie : {rules}. Techniques MITRE ATT&CK : {attack}.",
    ),
    ("rep_dates", "Dates", "Dates"),
    (
        "rep_started",
        "Start of the breach (at the latest: the first alert)",
        "Début de la violation (au plus tard : la première alerte)",
    ),
    (
        "rep_discovered",
        "Discovery (first alert)",
        "Découverte (première alerte)",
    ),
    ("rep_ended", "End of the breach", "Fin de la violation"),
    (
        "rep_persons_categories",
        "Categories of people concerned (e.g. residents, staff, users of a service)",
        "Catégories de personnes concernées (ex. : administrés, agents, usagers d'un service)",
    ),
    (
        "rep_persons_count",
        "Approximate number of people concerned",
        "Nombre approximatif de personnes concernées",
    ),
    (
        "rep_data_categories",
        "Categories of personal data concerned (e.g. identity, contact details, bank details, billing data)",
        "Catégories de données personnelles concernées (ex. : état civil, coordonnées, coordonnées bancaires, données de facturation)",
    ),
    (
        "rep_records_count",
        "Approximate number of records concerned",
        "Nombre approximatif d'enregistrements concernés",
    ),
    (
        "rep_files_touched",
        "({n} distinct file(s) appear in the alerts: check which of them hold personal data.)",
        "({n} fichier(s) distinct(s) apparaissent dans les alertes : vérifiez lesquels contiennent des données personnelles.)",
    ),
    (
        "rep_consequences",
        "Likely consequences for the people concerned",
        "Conséquences probables pour les personnes concernées",
    ),
    (
        "rep_conseq_availability",
        "Services and data unavailable until restored from backups; data lost if there is no backup.",
        "Services et données indisponibles jusqu'à la restauration des sauvegardes ; données perdues en l'absence de sauvegarde.",
    ),
    (
        "rep_conseq_confidentiality",
        "If data was taken: phishing, identity theft or fraud aimed at the people concerned.",
        "Si des données ont été dérobées : hameçonnage, usurpation d'identité ou fraude visant les personnes concernées.",
    ),
    ("rep_measures_taken", "Measures taken", "Mesures prises"),
    (
        "rep_other_measures",
        "Other measures taken outside Vigie",
        "Autres mesures prises en dehors de Vigie",
    ),
    (
        "rep_measures_planned",
        "Measures planned (e.g. password resets, restoring from backups, informing the people concerned)",
        "Mesures envisagées (ex. : réinitialisation des mots de passe, restauration des sauvegardes, information des personnes concernées)",
    ),
    (
        "rep_inform",
        "Information of the people concerned (GDPR art. 34: required when the risk to them is high)",
        "Information des personnes concernées (RGPD art. 34 : obligatoire quand le risque pour elles est élevé)",
    ),
    (
        "rep_dpo",
        "Contact point: data protection officer (DPO) or other contact (name, e-mail, phone)",
        "Point de contact : délégué à la protection des données (DPO) ou autre contact (nom, courriel, téléphone)",
    ),
    ("rep_contacts", "6. Who to call", "6. Qui contacter"),
    (
        "rep_call_certfr",
        "CERT-FR (ANSSI), the national computer emergency response team: report the incident and get advice.",
        "CERT-FR (ANSSI), le centre gouvernemental de veille, d'alerte et de réponse aux attaques informatiques : signaler l'incident et obtenir des conseils.",
    ),
    (
        "rep_call_csirt",
        "Your regional CSIRT (the region's incident response centre for local authorities and small organisations): its details are available from CERT-FR / ANSSI.",
        "Le CSIRT de votre région (centre régional de réponse aux incidents pour les collectivités et les petites structures) : ses coordonnées sont disponibles auprès du CERT-FR / de l'ANSSI.",
    ),
    (
        "rep_call_police",
        "The police or the gendarmerie: file a complaint (bring this report and the exported evidence).",
        "La police ou la gendarmerie : déposer plainte (apportez ce rapport et les éléments exportés).",
    ),
    (
        "rep_call_cnil",
        "The CNIL, within 72 hours, if personal data may be concerned (section 5).",
        "La CNIL, dans les 72 heures, si des données personnelles peuvent être concernées (section 5).",
    ),
    (
        "rep_call_cybermalveillance",
        "Cybermalveillance.gouv.fr: assistance for victims and a list of certified providers near you.",
        "Cybermalveillance.gouv.fr : assistance aux victimes et liste de prestataires labellisés près de chez vous.",
    ),
    (
        "rep_complete_link",
        "Fill in the fields marked \u{201c}To complete\u{201d}",
        "Renseigner les champs marqués \u{ab}\u{a0}À compléter\u{a0}\u{bb}",
    ),
    (
        "rep_notes_title",
        "Breach notification: what a person completes",
        "Notification de violation : ce qu'une personne complète",
    ),
    (
        "rep_notes_help",
        "Saved for this incident and shown in its report; every save is in the audit log.",
        "Enregistré pour cet incident et affiché dans son rapport ; chaque enregistrement figure dans le journal d'audit.",
    ),
];

/// The alert in plain words: who ran what, where, and which rule it matched.
#[allow(clippy::too_many_arguments)]
pub fn alert_summary(
    lang: Lang,
    host: &str,
    time: &str,
    process: &str,
    command_line: &str,
    parent: &str,
    user: &str,
    rule: &str,
) -> String {
    let by = |en: &str, fr: &str| {
        if lang == Lang::En {
            en.to_string()
        } else {
            fr.to_string()
        }
    };
    let parent = if parent.is_empty() {
        String::new()
    } else {
        by(
            &format!(", started by \u{201c}{parent}\u{201d}"),
            &format!(", lancé par \u{201c}{parent}\u{201d}"),
        )
    };
    let user = if user.is_empty() {
        String::new()
    } else {
        by(
            &format!(" as user {user}"),
            &format!(" sous l'utilisateur {user}"),
        )
    };
    let what = if process.is_empty() {
        by("activity", "une activité")
    } else if command_line.is_empty() {
        by(
            &format!("the program {process}"),
            &format!("le programme {process}"),
        )
    } else {
        by(
            &format!("the program {process} (command line: {command_line})"),
            &format!("le programme {process} (ligne de commande : {command_line})"),
        )
    };
    by(
        &format!(
            "On {host}, at {time}, {what}{parent}{user} did something that matches the rule \u{201c}{rule}\u{201d}."
        ),
        &format!(
            "Sur {host}, le {time}, {what}{parent}{user} a fait quelque chose qui correspond à la règle \u{201c}{rule}\u{201d}."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_translated() {
        let mut seen = std::collections::HashSet::new();
        for (k, en, fr) in TABLE {
            assert!(seen.insert(k), "duplicate key {k}");
            assert!(!en.is_empty() && !fr.is_empty(), "{k} lacks a translation");
        }
    }

    /// Keys the console's code passes as literals: `.t("key")`, and the
    /// error pages' `error(code, "key")` / `error_page(lang, "key")`.
    #[test]
    fn every_key_used_is_in_the_table() {
        let sources = [
            include_str!("auth.rs"),
            include_str!("layout.rs"),
            include_str!("mod.rs"),
            include_str!("pages.rs"),
            include_str!("report.rs"),
        ];
        let mut used = 0;
        for src in sources {
            for (i, _) in src.match_indices("\"") {
                let before = src[..i].trim_end();
                let literal_arg = before.ends_with(".t(")
                    || (before.ends_with(',')
                        && ["error(", "error_page("].iter().any(|f| {
                            let line = &before[before.rfind('\n').map_or(0, |n| n + 1)..];
                            line.contains(f)
                        }));
                if !literal_arg {
                    continue;
                }
                let key = &src[i + 1..i + 1 + src[i + 1..].find('"').unwrap()];
                assert!(STRINGS.contains_key(key), "key {key:?} is not in TABLE");
                used += 1;
            }
        }
        assert!(used > 100, "found only {used} keys: the scan is broken");
    }

    #[test]
    fn language_choice() {
        assert_eq!(Lang::pick(None, Some("fr-FR,fr;q=0.9,en;q=0.8")), Lang::Fr);
        assert_eq!(Lang::pick(Some("en"), Some("fr-FR")), Lang::En);
        assert_eq!(Lang::pick(None, Some("de-DE,en;q=0.5")), Lang::En);
        assert_eq!(Lang::pick(None, None), Lang::En);
        assert_eq!(Lang::pick(Some("xx"), Some("fr")), Lang::Fr);
        assert_eq!(Lang::Fr.t("alerts"), "Alertes");
    }
}
