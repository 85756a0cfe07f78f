//! The engine: compiled rules shared by every stream ([`Engine`]), and the
//! per-stream state that correlations need ([`Detector`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use rsigma_eval::{
    CompiledRule, CorrelationConfig, CorrelationEngine, CorrelationEventMode, EvaluationResult,
    ResultBody,
};
use rsigma_parser::{CorrelationRule, FilterRule, FilterRuleTarget, SigmaRule};
use serde_json::Value;
use vigie_event::{Alert, Event, Fields, Level, LogSource, RuleRef};

use crate::adapter::SigmaView;
use crate::gate::{Gate, Scratch};
use crate::kept::{KeptEvents, MAX_KEPT};
use crate::load::{self, Item, Parsed, Source};
use crate::report::{LoadReport, RuleStatus};
use crate::windows::umbrella_categories;

/// Custom attribute carrying a rule's index into [`Shared::rules`]; rsigma
/// hands custom attributes back with every match (an `Arc` clone).
const RULE_INDEX: &str = "vigie.rule";
const CORRELATION_INDEX: &str = "vigie.correlation";

/// How many contributing events a correlation alert carries at most, per
/// group (the window keeps counting beyond it; only the copies are capped).
pub const MAX_CORRELATION_EVENTS: usize = 20;

/// Distinct logsources whose rule routing a detector remembers. Logsources
/// come from input data, so the cache is bounded.
const ROUTE_CACHE: usize = 1024;

/// Metadata of a rule, for alerts.
#[derive(Debug, Clone)]
struct RuleMeta {
    rule: RuleRef,
}

/// Rules with the same logsource, ready for rsigma's `evaluate_rule`
/// behind their [`Gate`].
///
/// Prepared when the first event of its logsource arrives, not at load
/// time: a hunt over logs without driver loads, or a Linux agent, never
/// pays for the groups it does not see.
struct Group {
    product: Option<String>,
    category: Option<String>,
    service: Option<String>,
    /// The compiled rules and the filters to apply, until prepared.
    pending: Mutex<Option<PendingGroup>>,
    prepared: OnceLock<Prepared>,
}

/// A group's rules as evaluated (lowered, filters applied) and their gate.
struct Prepared {
    rules: Vec<CompiledRule>,
    gate: Gate,
}

/// A group's compiled rules and the filters to apply to them.
type PendingGroup = (Vec<CompiledRule>, Vec<Arc<FilterRule>>);

impl Group {
    fn new(key: GroupKey, rules: Vec<CompiledRule>) -> Self {
        let (product, category, service) = key;
        Group {
            product,
            category,
            service,
            pending: Mutex::new(Some((rules, Vec::new()))),
            prepared: OnceLock::new(),
        }
    }

    fn add_filter(&self, filter: Arc<FilterRule>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, filters)) = pending.as_mut() {
            filters.push(filter);
        }
    }

    /// The group's rules and gate, prepared on first use (once, even when
    /// several threads ask at the same time); `build_nanos` adds the time
    /// it took.
    fn prepared(&self, build_nanos: &AtomicU64) -> &Prepared {
        self.prepared.get_or_init(|| {
            let started = Instant::now();
            let taken = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            let (mut rules, filters) = taken.unwrap_or_default();
            strip_metadata(&mut rules, &filters);
            // Before the filters: their items read the original fields,
            // which stays exact (crate::lowered).
            for rule in &mut rules {
                crate::lowered::rewrite(rule);
            }
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let rules = with_filters(rules, &filters);
                let gate = Gate::build(&rules);
                Prepared { rules, gate }
            }));
            let prepared = built.unwrap_or_else(|_| {
                // A panic must not take the stream down; these rules are lost.
                tracing::error!(
                    "preparing the rules of {:?}/{:?}/{:?} panicked; they are skipped",
                    self.product,
                    self.category,
                    self.service
                );
                Prepared {
                    rules: Vec::new(),
                    gate: Gate::build(&[]),
                }
            });
            build_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            prepared
        })
    }
}

/// The rules as rsigma's filters rewrite them (their detections added,
/// each condition and-ed with the filter's). rsigma applies filters only
/// inside an engine, which then builds its own candidate index: that index
/// (about 130 MB of automata for SigmaHQ's Windows rules, by an earlier
/// measurement in docs/vigie-detect.md) would go unused
/// beside the gate, so an engine is made only for a group with filters,
/// and dropped once it has given the rules back.
fn with_filters(rules: Vec<CompiledRule>, filters: &[Arc<FilterRule>]) -> Vec<CompiledRule> {
    if filters.is_empty() {
        return rules;
    }
    let mut engine = rsigma_eval::Engine::new();
    engine.extend_compiled_rules(rules);
    for filter in filters {
        // Checked at load time (see `check_filter`).
        if let Err(err) = engine.apply_filter(filter) {
            tracing::error!(filter = %filter.title, "filter not applied: {err}");
        }
    }
    engine.rules().to_vec()
}

/// rsigma copies a rule's title and tags into every match; Vigie reads its
/// own metadata (by [`RULE_INDEX`]) instead, so they are dropped here, and
/// the description and false positives with them. A title that a filter
/// names stays (filters find their rules by id or title).
fn strip_metadata(rules: &mut [CompiledRule], filters: &[Arc<FilterRule>]) {
    let named: HashSet<&str> = filters
        .iter()
        .filter_map(|f| match &f.rules {
            FilterRuleTarget::Specific(refs) => Some(refs.iter().map(String::as_str)),
            FilterRuleTarget::Any => None,
        })
        .flatten()
        .collect();
    for rule in rules {
        rule.tags = Vec::new();
        rule.description = None;
        rule.falsepositives = Vec::new();
        if !named.contains(rule.title.as_str()) {
            rule.title = String::new();
        }
    }
}

/// (product, category, service), lowercase.
type GroupKey = (Option<String>, Option<String>, Option<String>);

/// What every stream shares: compiled once, read-only.
struct Shared {
    groups: Vec<Group>,
    /// Time spent building group engines on first use, in nanoseconds.
    build_nanos: AtomicU64,
    /// Alert metadata by rule index, shared by every match of the rule.
    rules: Vec<Arc<RuleRef>>,
    correlations: Vec<CorrelationRule>,
    correlation_meta: Vec<Arc<RuleRef>>,
}

/// A loaded rule set, ready to evaluate events.
///
/// The compiled rules live behind an `Arc`: [`Engine::detector`] hands out
/// more [`Detector`]s (one per thread or stream) without compiling again.
/// The engine itself carries one detector, so a single stream can call
/// [`Engine::process`] directly.
pub struct Engine {
    detector: Detector,
}

/// One stream's view of an [`Engine`]: the shared compiled rules plus this
/// stream's own state (correlation windows, routing cache). Cheap to create.
///
/// Correlations only see the events of their own detector: when files are
/// hunted in parallel, each file has its detector, so a correlation counts
/// events within one file.
pub struct Detector {
    shared: Arc<Shared>,
    routes: HashMap<LogSource, Box<[u32]>>,
    /// The gate's buffers, by group (grown on first use).
    scratch: Vec<Scratch>,
    /// Whether the gate picks the rules to evaluate ([`Detector::set_gate`]).
    gated: bool,
    correlation: Option<CorrelationEngine>,
    /// The events correlation windows refer to (rsigma keeps their ids).
    kept: KeptEvents,
}

impl Engine {
    /// Loads every `.yml` / `.yaml` file below `dirs` (recursively). Never
    /// fails: what did not load is in the report with its reason.
    pub fn load(dirs: &[impl AsRef<Path>]) -> (Engine, LoadReport) {
        Self::load_with_documents(dirs, &[])
    }

    /// Rules from in-memory YAML documents: `(name, yaml)`; the name stands
    /// for the path in the report.
    pub fn from_yaml(documents: &[(&str, &str)]) -> (Engine, LoadReport) {
        Self::load_with_documents(&[] as &[&Path], documents)
    }

    /// Files below `dirs` plus in-memory documents (e.g. a rule pack
    /// embedded in the binary).
    pub fn load_with_documents(
        dirs: &[impl AsRef<Path>],
        documents: &[(&str, &str)],
    ) -> (Engine, LoadReport) {
        let started = Instant::now();
        let mut report = LoadReport::default();
        let (files, problems) = load::find_files(dirs);
        for problem in problems {
            report.push(problem);
        }
        report.totals.files = files.len() + documents.len();
        let mut sources: Vec<Source> = Vec::with_capacity(files.len() + documents.len());
        sources.extend(documents.iter().map(|(name, text)| Source {
            name: name.to_string(),
            text: Ok(text.to_string()),
        }));
        sources.extend(files.iter().map(|p| load::read_source(p)));
        let parsed = parse_parallel(&sources);
        let engine = build(parsed, &mut report);
        report.seconds = started.elapsed().as_secs_f64();
        report.finish();
        (engine, report)
    }

    /// An engine without rules (a baseline for benchmarks).
    pub fn empty() -> Engine {
        Self::from_yaml(&[]).0
    }

    /// A new detector sharing this engine's compiled rules, with fresh
    /// per-stream state.
    pub fn detector(&self) -> Detector {
        self.detector.fresh()
    }

    /// Evaluates one event with the engine's own detector.
    pub fn process(&mut self, event: &Event) -> Vec<Alert> {
        self.detector.process(event)
    }

    /// Detection rules loaded (correlations and filters not counted).
    pub fn rule_count(&self) -> usize {
        self.detector.shared.rules.len()
    }

    /// Correlation rules loaded.
    pub fn correlation_count(&self) -> usize {
        self.detector.shared.correlations.len()
    }

    /// Builds every rule group's index now rather than on the first event of
    /// its logsource (for a long-running process that wants no first-event
    /// delay). Groups build in parallel on all cores.
    pub fn prepare_all(&self) {
        let shared = &self.detector.shared;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    while let Some(group) = shared.groups.get(next.fetch_add(1, Ordering::Relaxed))
                    {
                        group.prepared(&shared.build_nanos);
                    }
                });
            }
        });
    }

    /// Seconds spent so far preparing rule groups on first use (they are
    /// not built by [`Engine::load`]; see [`Engine::prepare_all`]).
    pub fn index_build_seconds(&self) -> f64 {
        self.detector.shared.build_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Rule groups (one per distinct logsource) and how many of them have
    /// been prepared (their gate built).
    pub fn groups_built(&self) -> (usize, usize) {
        let groups = &self.detector.shared.groups;
        let built = groups.iter().filter(|g| g.prepared.get().is_some()).count();
        (groups.len(), built)
    }
}

/// Parses and compiles sources on all cores; results keep the source order.
fn parse_parallel(sources: &[Source]) -> Vec<Parsed> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(sources.len().max(1));
    if threads <= 1 {
        return sources.iter().flat_map(load::parse_source).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Vec<Parsed>> = Vec::new();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(source) = sources.get(i) else { break };
                        done.push((i, load::parse_source(source)));
                    }
                    done
                })
            })
            .collect();
        slots.resize_with(sources.len(), Vec::new);
        for worker in workers {
            match worker.join() {
                Ok(done) => {
                    for (i, parsed) in done {
                        slots[i] = parsed;
                    }
                }
                // A panic inside the parser must not lose the other rules.
                Err(_) => tracing::error!("a rule parser thread panicked"),
            }
        }
    });
    slots.into_iter().flatten().collect()
}

fn level(l: Option<rsigma_parser::Level>) -> Option<Level> {
    use rsigma_parser::Level as L;
    l.map(|l| match l {
        L::Informational => Level::Informational,
        L::Low => Level::Low,
        L::Medium => Level::Medium,
        L::High => Level::High,
        L::Critical => Level::Critical,
    })
}

fn status(s: Option<rsigma_parser::Status>) -> Option<String> {
    use rsigma_parser::Status as S;
    s.map(|s| {
        match s {
            S::Stable => "stable",
            S::Test => "test",
            S::Experimental => "experimental",
            S::Deprecated => "deprecated",
            S::Unsupported => "unsupported",
        }
        .to_string()
    })
}

/// ATT&CK technique ids from Sigma tags: `attack.t1059.001` → `T1059.001`.
pub fn attack_techniques(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        let lower = tag.to_ascii_lowercase();
        let Some(rest) = lower.strip_prefix("attack.t") else {
            continue;
        };
        let (main, sub) = rest.split_once('.').unwrap_or((rest, ""));
        let valid = main.len() == 4
            && main.bytes().all(|b| b.is_ascii_digit())
            && (sub.is_empty() || (sub.len() == 3 && sub.bytes().all(|b| b.is_ascii_digit())));
        if valid {
            let id = format!("T{}", rest);
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

fn rule_meta(rule: &SigmaRule) -> RuleMeta {
    RuleMeta {
        rule: RuleRef {
            id: rule
                .id
                .clone()
                .or_else(|| rule.name.clone())
                .unwrap_or_default(),
            name: rule.title.clone(),
            level: level(rule.level),
            status: status(rule.status),
            attack: attack_techniques(&rule.tags),
            tags: rule.tags.clone(),
            description: rule.description.clone(),
            reference: rule.references.clone(),
            falsepositives: rule.falsepositives.clone(),
            author: rule.author.clone(),
            ruleset: "sigma".into(),
        },
    }
}

fn correlation_meta(corr: &CorrelationRule) -> RuleMeta {
    RuleMeta {
        rule: RuleRef {
            id: corr
                .id
                .clone()
                .or_else(|| corr.name.clone())
                .unwrap_or_default(),
            name: corr.title.clone(),
            level: level(corr.level),
            status: status(corr.status),
            attack: attack_techniques(&corr.tags),
            tags: corr.tags.clone(),
            description: corr.description.clone(),
            reference: corr.references.clone(),
            falsepositives: corr.falsepositives.clone(),
            author: corr.author.clone(),
            ruleset: "sigma-correlation".into(),
        },
    }
}

fn lower(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|s| s.to_ascii_lowercase())
}

/// Turns parsed documents into the shared rule set, recording every
/// outcome in the report.
fn build(parsed: Vec<Parsed>, report: &mut LoadReport) -> Engine {
    let mut rules: Vec<(SigmaRule, CompiledRule, usize)> = Vec::new();
    let mut correlations: Vec<(CorrelationRule, usize)> = Vec::new();
    let mut filters: Vec<(FilterRule, usize)> = Vec::new();
    for p in parsed {
        let at = report.rules.len();
        report.push(p.entry);
        match p.item {
            Some(Item::Detection(rule, compiled)) => rules.push((*rule, *compiled, at)),
            Some(Item::Correlation(c)) => correlations.push((*c, at)),
            Some(Item::Filter(f)) => filters.push((*f, at)),
            None => {}
        }
    }

    // Correlations name rules by id or name; the per-stream correlation
    // state only sees rule ids in match results, so names become ids here.
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, (rule, _, _)) in rules.iter().enumerate() {
        if let Some(id) = &rule.id {
            by_id.entry(id.clone()).or_insert(i);
        }
        if let Some(name) = &rule.name {
            by_name.entry(name.clone()).or_insert(i);
        }
    }
    let corr_names: HashSet<String> = correlations
        .iter()
        .flat_map(|(c, _)| [c.id.clone(), c.name.clone()])
        .flatten()
        .collect();
    let mut kept_correlations: Vec<CorrelationRule> = Vec::new();
    let mut correlation_meta: Vec<Arc<RuleRef>> = Vec::new();
    for (mut corr, at) in correlations {
        let mut missing = Vec::new();
        for r in corr.rules.iter_mut() {
            if by_id.contains_key(r.as_str()) || corr_names.contains(r.as_str()) {
                continue;
            }
            if let Some(&i) = by_name.get(r.as_str()) {
                let rule = &mut rules[i];
                match &rule.0.id {
                    Some(id) => *r = id.clone(),
                    // A rule known only by name answers to that name.
                    None => rule.1.id = Some(r.clone()),
                }
                continue;
            }
            missing.push(r.clone());
        }
        if !missing.is_empty() {
            let e = &mut report.rules[at];
            e.status = RuleStatus::Error;
            e.reason = Some(format!(
                "missing referenced rule(s): {} (not found, or not loaded)",
                missing.join(", ")
            ));
            continue;
        }
        temporal_needs_all(&mut corr);
        let index = kept_correlations.len();
        corr.custom_attributes.insert(
            CORRELATION_INDEX.into(),
            yaml_serde::Value::Number((index as u64).into()),
        );
        // Check it compiles once, so a bad one is reported at load time.
        let mut probe = CorrelationEngine::new(CorrelationConfig::default());
        if let Err(err) = probe.add_correlation(&corr) {
            let e = &mut report.rules[at];
            e.status = RuleStatus::Error;
            e.reason = Some(err.to_string());
            continue;
        }
        correlation_meta.push(Arc::new(correlation_meta_of(&corr).rule));
        kept_correlations.push(corr);
    }

    // Detection rules into one rsigma engine per logsource.
    let mut metas = Vec::with_capacity(rules.len());
    let mut group_index: HashMap<GroupKey, usize> = HashMap::new();
    let mut grouped: Vec<Vec<CompiledRule>> = Vec::new();
    let mut keys = Vec::new();
    let mut rule_group: Vec<usize> = Vec::with_capacity(rules.len());
    for (rule, mut compiled, _) in rules {
        let index = metas.len();
        let mut meta = rule_meta(&rule);
        if meta.rule.id.is_empty()
            && let Some(id) = &compiled.id
        {
            meta.rule.id = id.clone();
        }
        metas.push(meta);
        std::sync::Arc::make_mut(&mut compiled.custom_attributes)
            .insert(RULE_INDEX.into(), Value::from(index as u64));
        let key = (
            lower(&compiled.logsource.product),
            lower(&compiled.logsource.category),
            lower(&compiled.logsource.service),
        );
        let g = *group_index.entry(key.clone()).or_insert_with(|| {
            grouped.push(Vec::new());
            keys.push(key);
            grouped.len() - 1
        });
        rule_group.push(g);
        grouped[g].push(compiled);
    }
    // Indexes are built on first use (see `Group`).
    let groups: Vec<Group> = grouped
        .into_iter()
        .zip(keys)
        .map(|(rules, key)| Group::new(key, rules))
        .collect();

    // Filters change the rules they name (or all rules of their logsource).
    for (filter, at) in filters {
        if let Err(err) = check_filter(&filter) {
            let e = &mut report.rules[at];
            e.status = RuleStatus::Error;
            e.reason = Some(err);
            continue;
        }
        let targets: Vec<usize> = match &filter.rules {
            FilterRuleTarget::Any => (0..groups.len()).collect(),
            FilterRuleTarget::Specific(refs) => {
                let mut hit: Vec<usize> = metas
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| refs.iter().any(|r| *r == m.rule.id || *r == m.rule.name))
                    .map(|(i, _)| rule_group[i])
                    .collect();
                hit.sort_unstable();
                hit.dedup();
                if hit.is_empty() {
                    let e = &mut report.rules[at];
                    e.status = RuleStatus::Error;
                    e.reason = Some(format!("filter names no loaded rule: {}", refs.join(", ")));
                    continue;
                }
                hit
            }
        };
        let filter = Arc::new(filter);
        for g in targets {
            groups[g].add_filter(Arc::clone(&filter));
        }
    }

    let shared = Arc::new(Shared {
        groups,
        build_nanos: AtomicU64::new(0),
        rules: metas.into_iter().map(|m| Arc::new(m.rule)).collect(),
        correlations: kept_correlations,
        correlation_meta,
    });
    Engine {
        detector: Detector::new(shared),
    }
}

/// A filter's own detections must compile; applying it to an engine without
/// rules checks that without building anything.
fn check_filter(filter: &FilterRule) -> Result<(), String> {
    rsigma_eval::Engine::new()
        .apply_filter(filter)
        .map_err(|e| e.to_string())
}

/// Sigma: a `temporal` correlation without a condition fires when all its
/// rules matched in the window. rsigma 0.23 parses the missing condition as
/// "at least one rule", which would fire on any single match.
fn temporal_needs_all(corr: &mut CorrelationRule) {
    use rsigma_parser::{ConditionOperator, CorrelationCondition, CorrelationType};
    if corr.correlation_type != CorrelationType::Temporal || corr.rules.len() < 2 {
        return;
    }
    if let CorrelationCondition::Threshold {
        predicates,
        field: None,
        ..
    } = &mut corr.condition
        && predicates.len() == 1
        && predicates[0] == (ConditionOperator::Gte, 1)
    {
        predicates[0].1 = corr.rules.len() as u64;
    }
}

/// rsigma 0.23 returns a `value_percentile` result without checking its
/// condition; check it here.
fn percentile_holds(corr: &CorrelationRule, value: f64) -> bool {
    use rsigma_parser::{ConditionOperator as Op, CorrelationCondition, CorrelationType};
    if corr.correlation_type != CorrelationType::ValuePercentile {
        return true;
    }
    let CorrelationCondition::Threshold { predicates, .. } = &corr.condition else {
        return true;
    };
    predicates.iter().all(|(op, t)| {
        let t = *t as f64;
        match op {
            Op::Lt => value < t,
            Op::Lte => value <= t,
            Op::Gt => value > t,
            Op::Gte => value >= t,
            Op::Eq => (value - t).abs() < f64::EPSILON,
            Op::Neq => (value - t).abs() >= f64::EPSILON,
        }
    })
}

fn correlation_meta_of(corr: &CorrelationRule) -> RuleMeta {
    correlation_meta(corr)
}

fn fits(rule: &Option<String>, event: &Option<std::borrow::Cow<'static, str>>) -> bool {
    match rule {
        None => true,
        Some(r) => event.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(r)),
    }
}

impl Detector {
    fn new(shared: Arc<Shared>) -> Self {
        let correlation = (!shared.correlations.is_empty()).then(|| {
            let config = CorrelationConfig {
                // Sigma: rules used by a correlation (without `generate: true`)
                // do not alert on their own.
                emit_detections: false,
                // Ids only: the events themselves are in `Detector::kept`.
                correlation_event_mode: CorrelationEventMode::Refs,
                max_correlation_events: MAX_CORRELATION_EVENTS,
                ..CorrelationConfig::default()
            };
            let mut engine = CorrelationEngine::new(config);
            for corr in &shared.correlations {
                // Checked at load time.
                if let Err(err) = engine.add_correlation(corr) {
                    tracing::error!(rule = %corr.title, "correlation rule rejected: {err}");
                }
            }
            engine
        });
        // A window of a correlation (or the gap of a temporal one) never
        // spans more than its timespan.
        let horizon = shared
            .correlations
            .iter()
            .map(|c| c.timespan.seconds)
            .max()
            .unwrap_or(0);
        Detector {
            shared,
            routes: HashMap::new(),
            scratch: Vec::new(),
            gated: true,
            correlation,
            kept: KeptEvents::new(horizon, MAX_KEPT),
        }
    }

    /// Whether the rule gate picks the rules each event is evaluated
    /// against (the default), or every rule routed to the event's logsource
    /// is evaluated. Turning it off changes no result, only the cost: it is
    /// there to check exactly that (SigmaHQ's samples are hunted both ways
    /// in vigie-hunt's tests), and to rule the gate out when a detection
    /// seems missed.
    pub fn set_gate(&mut self, on: bool) {
        self.gated = on;
    }

    fn fresh(&self) -> Detector {
        Detector::new(Arc::clone(&self.shared))
    }

    /// The rule groups whose logsource fits the event's.
    fn compute_route(&self, ls: &LogSource) -> Box<[u32]> {
        let groups = &self.shared.groups;
        if ls.is_empty() {
            // A record of unknown origin: every rule may look at it.
            return (0..groups.len() as u32).collect();
        }
        let umbrellas = ls.category.as_deref().map_or(&[][..], umbrella_categories);
        groups
            .iter()
            .enumerate()
            .filter(|(_, g)| {
                fits(&g.product, &ls.product)
                    && fits(&g.service, &ls.service)
                    && match &g.category {
                        None => true,
                        Some(c) => {
                            ls.category
                                .as_deref()
                                .is_some_and(|e| e.eq_ignore_ascii_case(c))
                                || umbrellas.iter().any(|u| u == c)
                        }
                    }
            })
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Evaluates one event: the alerts of every detection rule whose
    /// logsource fits it, and of every correlation it completes.
    pub fn process(&mut self, event: &Event) -> Vec<Alert> {
        self.matches(event)
            .into_iter()
            .map(|m| m.into_alert(event))
            .collect()
    }

    /// Like [`Detector::process`], without copying the event into each
    /// alert: a hunt writes the event once for all the rules it fired.
    pub fn matches(&mut self, event: &Event) -> Vec<Match> {
        let ls = event.logsource();
        let computed;
        let route: &[u32] = match self.routes.get(&ls) {
            Some(r) => r,
            None => {
                let r = self.compute_route(&ls);
                if self.routes.len() < ROUTE_CACHE {
                    self.routes.insert(ls.clone(), r);
                    &self.routes[&ls]
                } else {
                    computed = r;
                    &computed
                }
            }
        };
        if route.is_empty() {
            // No rule looks at this logsource: the view (and its field
            // index) is not needed.
            return Vec::new();
        }
        let gated = self.gated;
        let reference = self.kept.next_reference();
        let view = SigmaView::new(event, reference);
        let mut results: Vec<EvaluationResult> = Vec::new();
        for &g in route {
            let group = &self.shared.groups[g as usize];
            let prepared = group.prepared(&self.shared.build_nanos);
            if self.scratch.len() <= g as usize {
                self.scratch.resize_with(g as usize + 1, Scratch::default);
            }
            let scratch = &mut self.scratch[g as usize];
            // A bug in the engine on one odd event must not stop the stream.
            let found = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let evaluate = |r: &CompiledRule| rsigma_eval::evaluate_rule(r, &view);
                if !gated {
                    return prepared.rules.iter().filter_map(evaluate).collect();
                }
                prepared.gate.candidates(&view, scratch);
                scratch
                    .candidates
                    .iter()
                    .filter_map(|&r| evaluate(&prepared.rules[r as usize]))
                    .collect::<Vec<_>>()
            })) {
                Ok(found) => found,
                Err(_) => {
                    // Its bits may be left half set: start it afresh.
                    self.scratch[g as usize] = Scratch::default();
                    tracing::error!(event = %event.id, "rule evaluation panicked; event skipped for this rule group");
                    continue;
                }
            };
            if results.is_empty() {
                results = found;
            } else {
                results.extend(found);
            }
        }
        if results.is_empty() {
            return Vec::new();
        }
        if let Some(corr) = &mut self.correlation {
            let ts = event.time.timestamp();
            results = corr.process_with_detections(&view, results, ts);
            if view.referenced() {
                self.kept.keep(reference, event);
            }
        }
        results
            .into_iter()
            .filter_map(|r| self.to_match(reference, r))
            .collect()
    }

    /// `reference`: the triggering event's, which the alert carries first
    /// anyway.
    fn to_match(&self, reference: u64, result: EvaluationResult) -> Option<Match> {
        let attrs = &result.header.custom_attributes;
        match result.body {
            ResultBody::Detection(_) => {
                let index = attrs.get(RULE_INDEX)?.as_u64()? as usize;
                Some(Match {
                    rule: Arc::clone(self.shared.rules.get(index)?),
                    related: Vec::new(),
                })
            }
            ResultBody::Correlation(body) => {
                let index = attrs.get(CORRELATION_INDEX)?.as_u64()? as usize;
                let rule = self.shared.correlation_meta.get(index)?;
                if !percentile_holds(&self.shared.correlations[index], body.aggregated_value) {
                    return None;
                }
                // References (the numbers SigmaView::to_json gave),
                // whichever mode the rule asked rsigma for.
                let refs = body
                    .event_refs
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|r| r.id?.parse::<u64>().ok())
                    .chain(
                        body.events
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|v| v.get("id").and_then(Value::as_u64)),
                    );
                let mut related = Vec::new();
                for r in refs.filter(|&r| r != reference) {
                    match self.kept.get(r) {
                        Some(e) => related.push(e.clone()),
                        // Forgotten under a flood (MAX_KEPT): the alert
                        // carries the others.
                        None => tracing::debug!(reference = r, "contributing event no longer kept"),
                    }
                }
                Some(Match {
                    rule: Arc::clone(rule),
                    related,
                })
            }
        }
    }
}

/// A rule that fired on an event ([`Detector::matches`]), without a copy of
/// the event: [`Match::into_alert`] makes the [`Alert`].
#[derive(Debug, Clone)]
pub struct Match {
    /// The rule, shared with every other match of it.
    pub rule: Arc<RuleRef>,
    /// For a correlation, the other contributing events the engine kept
    /// (the triggering event is not repeated); empty for a detection.
    pub related: Vec<Event>,
}

impl Match {
    pub fn level(&self) -> Level {
        self.rule.level.unwrap_or(Level::Medium)
    }

    /// The alert for `event`, the event this match came from: that event
    /// first, then the related ones.
    pub fn into_alert(self, event: &Event) -> Alert {
        let mut events = Vec::with_capacity(1 + self.related.len());
        events.push(event.clone());
        events.extend(self.related);
        Alert {
            id: uuid::Uuid::now_v7(),
            time: event.time,
            host: event.host.clone(),
            rule: Arc::unwrap_or_clone(self.rule),
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_ids_from_tags() {
        let tags: Vec<String> = [
            "attack.execution",
            "attack.t1059.001",
            "attack.T1003",
            "attack.t1003",
            "attack.t12",
            "attack.g0016",
            "cve.2021-44228",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(attack_techniques(&tags), vec!["T1059.001", "T1003"]);
    }

    #[test]
    fn engine_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Engine>();
        assert_send_sync::<Detector>();
    }
}
