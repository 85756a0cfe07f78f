//! A necessary-condition gate in front of rsigma's rule evaluation.
//!
//! rsigma 0.23's candidate index keeps, for each rule, one set of
//! "witnesses" (literals of which at least one must occur in the event),
//! and from an `AND` it keeps the single most selective side. On SigmaHQ's
//! Windows rules that leaves about 40 candidates per event for 1.5 matches:
//! a process-creation rule wanting `Image|endswith: '\cmd.exe'` *and* a
//! rare command line is a candidate for every `cmd.exe` event, and rsigma
//! then evaluates it in full (string matching, lowercasing, a second pass
//! that collects the matched fields).
//!
//! The gate keeps the whole shape instead: each rule becomes a monotone
//! formula (`All`/`Any`) over *atoms*, cheap facts about the event (a field
//! is present, a field's folded value equals or contains a literal, some
//! string of the event contains a literal). Per event, every atom of the
//! group is computed once (one Aho-Corasick scan per field value, one hash
//! lookup for equalities), then each rule's formula is checked against the
//! atoms with bit tests, and only rules whose formula holds go to rsigma's
//! `evaluate_rule`.
//!
//! Exact, never lossy: a formula is implied by its rule. Each leaf follows
//! from the evaluator's own behaviour (rsigma's `compiler` and `matcher`):
//! an item with a field is false on an absent field unless its matcher is
//! `Null`; case-insensitive matchers hold their literal folded and compare it
//! with the value folded by `ascii_lowercase_cow`; a case-sensitive literal
//! that is ASCII still occurs, folded, in the folded value (folding maps
//! characters one by one and never removes an ASCII one); a regex match
//! contains its mandatory literals. Negations, numeric and network
//! comparisons, field references, expansions and timestamps give `True`:
//! they can only weaken the gate, never make it refuse a match. `AND` keeps
//! every side (each is necessary), which is what rsigma's index gives up.
//! The test `gate_never_hides_a_match` (tests/gate.rs) compares the gated
//! evaluation with a plain evaluation of every rule on SigmaHQ's samples.

use std::borrow::Cow;
use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use memchr::memmem;
use rsigma_eval::compiler::{CompiledDetection, CompiledDetectionItem};
use rsigma_eval::event::{Event as SigmaEvent, EventValue};
use rsigma_eval::matcher::{GroupMode, ascii_lowercase_cow};
use rsigma_eval::{CompiledMatcher, CompiledRule};
use rsigma_parser::{ConditionExpr, Quantifier};

/// Regex literals shorter than this are not worth an atom: nearly every
/// value contains them.
const MIN_REGEX_LITERAL: usize = 2;

/// Larger literal sets are searched with a contiguous NFA rather than a
/// DFA: SigmaHQ's 5,634 command-line literals made a 35 MB DFA, whose cache
/// misses cost more than the NFA's extra steps (first pass over the
/// detection benchmark's events: 378 and 462 ms against 505 and 522 ms
/// with DFAs only, alternated twice), and memory: with NFAs above 1,000
/// literals, the hunt's peak RSS went from 183-184 MB to 151-152 MB
/// (`/usr/bin/time`, two runs each).
const DFA_MAX_NEEDLES: usize = 300;

/// Cap on one automaton's patterns; past it a field keeps only presence
/// (its substring atoms are then treated as always true).
const MAX_NEEDLES: usize = 1 << 16;

/// A fact about an event that one comparison of a rule implies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Atom {
    /// The field is present (any value, even null).
    Present(String),
    /// The field's folded value, or one of its members, equals the literal.
    Equals(String, String),
    /// The field's folded value, or one of its members, contains the literal.
    Contains(String, String),
    /// Some string of the event, folded, contains the literal (keywords).
    Keyword(String),
    /// rsigma's own matcher holds on the field's value: for comparisons the
    /// gate has no literal for (numbers, addresses, regexes...). The key
    /// names the matcher ([`item_key`]); decided only when asked.
    Item(String, String),
}

impl Atom {
    /// Lower is more selective: picks the clause a rule is filed under.
    fn rank(&self) -> u8 {
        match self {
            Atom::Equals(..) => 0,
            Atom::Contains(_, n) if n.len() >= 8 => 1,
            Atom::Contains(..) => 2,
            Atom::Keyword(n) if n.len() >= 8 => 3,
            Atom::Keyword(_) => 4,
            Atom::Present(_) | Atom::Item(..) => 5,
        }
    }
}

/// A monotone formula over atom ids. `True` appears only at the root of a
/// simplified formula.
#[derive(Debug, Clone, PartialEq)]
enum Formula {
    True,
    Atom(u32),
    All(Box<[Formula]>),
    Any(Box<[Formula]>),
}

impl Formula {
    fn all(parts: Vec<Formula>) -> Formula {
        let mut kept: Vec<Formula> = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                Formula::True => {}
                Formula::All(inner) => kept.extend(inner.into_vec()),
                other => kept.push(other),
            }
        }
        dedup_atoms(&mut kept);
        match kept.len() {
            0 => Formula::True,
            1 => kept.pop().unwrap_or(Formula::True),
            _ => Formula::All(kept.into_boxed_slice()),
        }
    }

    fn any(parts: Vec<Formula>) -> Formula {
        let mut kept: Vec<Formula> = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                Formula::True => return Formula::True,
                Formula::Any(inner) => kept.extend(inner.into_vec()),
                other => kept.push(other),
            }
        }
        dedup_atoms(&mut kept);
        match kept.len() {
            // An empty disjunction never holds; rsigma owns that verdict,
            // so stay open rather than refuse.
            0 => Formula::True,
            1 => kept.pop().unwrap_or(Formula::True),
            _ => Formula::Any(kept.into_boxed_slice()),
        }
    }

    /// Atoms of which at least one holds whenever the formula does, chosen
    /// to be selective; `None` for `True`.
    fn clause(&self, atoms: &[Atom]) -> Option<Vec<u32>> {
        match self {
            Formula::True => None,
            // Only the first pass files rules, and it cannot decide these.
            Formula::Atom(a) if matches!(atoms[*a as usize], Atom::Item(..)) => None,
            Formula::Atom(a) => Some(vec![*a]),
            Formula::Any(parts) => {
                let mut out = Vec::new();
                for p in parts.iter() {
                    out.extend(p.clause(atoms)?);
                }
                out.sort_unstable();
                out.dedup();
                Some(out)
            }
            Formula::All(parts) => parts
                .iter()
                .filter_map(|p| p.clause(atoms))
                .min_by_key(|c| {
                    let worst = c.iter().map(|&a| atoms[a as usize].rank()).max();
                    (worst, c.len())
                }),
        }
    }
}

/// A group of matchers combined as its mode says.
fn by_mode(mode: &GroupMode, parts: Vec<Formula>) -> Formula {
    match mode {
        GroupMode::Any => Formula::any(parts),
        GroupMode::All => Formula::all(parts),
    }
}

/// Drops repeated atoms of one `All`/`Any` (hash lists repeat literals),
/// keeping the first of each.
fn dedup_atoms(parts: &mut Vec<Formula>) {
    let mut seen = std::collections::HashSet::new();
    parts.retain(|p| match p {
        Formula::Atom(a) => seen.insert(*a),
        _ => true,
    });
}

fn bit(set: &[u64], i: u32) -> bool {
    set[(i / 64) as usize] & (1 << (i % 64)) != 0
}

/// Builds formulas, interning atoms.
#[derive(Default)]
struct Builder {
    ids: HashMap<Atom, u32>,
    atoms: Vec<Atom>,
    /// The matcher of each [`Atom::Item`], by atom id.
    matchers: HashMap<u32, CompiledMatcher>,
}

impl Builder {
    fn atom(&mut self, atom: Atom) -> Formula {
        let next = self.atoms.len() as u32;
        let id = *self.ids.entry(atom.clone()).or_insert_with(|| {
            self.atoms.push(atom);
            next
        });
        Formula::Atom(id)
    }

    fn rule(&mut self, rule: &CompiledRule) -> Formula {
        if rule.conditions.is_empty() {
            return Formula::True;
        }
        let parts = rule
            .conditions
            .iter()
            .map(|c| self.condition(c, &rule.detections))
            .collect();
        Formula::any(parts)
    }

    fn condition(
        &mut self,
        cond: &ConditionExpr,
        detections: &HashMap<String, CompiledDetection>,
    ) -> Formula {
        match cond {
            ConditionExpr::Identifier(name) => match detections.get(name) {
                Some(d) => self.detection(d),
                None => Formula::True,
            },
            ConditionExpr::And(parts) => {
                let parts = parts
                    .iter()
                    .map(|p| self.condition(p, detections))
                    .collect();
                Formula::all(parts)
            }
            ConditionExpr::Or(parts) => {
                let parts = parts
                    .iter()
                    .map(|p| self.condition(p, detections))
                    .collect();
                Formula::any(parts)
            }
            ConditionExpr::Not(_) => Formula::True,
            ConditionExpr::Selector {
                quantifier,
                pattern,
            } => {
                // Sorted: the formula (and so atom ids) must not depend on
                // the detections map's iteration order.
                let mut names: Vec<&String> = detections
                    .keys()
                    .filter(|n| pattern.matches_detection_name(n))
                    .collect();
                names.sort();
                let parts: Vec<Formula> = names
                    .iter()
                    .map(|n| self.detection(&detections[*n]))
                    .collect();
                match quantifier {
                    // Vacuously true over no detection, or with `0 of`.
                    Quantifier::All if parts.is_empty() => Formula::True,
                    Quantifier::Count(0) => Formula::True,
                    Quantifier::All => Formula::all(parts),
                    // At least one of them holds.
                    Quantifier::Any | Quantifier::Count(_) => Formula::any(parts),
                }
            }
        }
    }

    fn detection(&mut self, d: &CompiledDetection) -> Formula {
        match d {
            CompiledDetection::AllOf(items) => {
                let parts = items.iter().map(|i| self.item(i)).collect();
                Formula::all(parts)
            }
            CompiledDetection::AnyOf(subs) => {
                let parts = subs.iter().map(|s| self.detection(s)).collect();
                Formula::any(parts)
            }
            CompiledDetection::And(subs) => {
                let parts = subs.iter().map(|s| self.detection(s)).collect();
                Formula::all(parts)
            }
            CompiledDetection::Keywords(m) => self.matcher(m, None, false),
            CompiledDetection::ArrayMatch {
                field, quantifier, ..
            } => {
                use rsigma_parser::ArrayQuantifier;
                match quantifier {
                    // Both need at least one member: the array is present.
                    ArrayQuantifier::Any | ArrayQuantifier::All => {
                        self.atom(Atom::Present(field.clone()))
                    }
                    // True on an absent or empty array.
                    ArrayQuantifier::AllOrEmpty | ArrayQuantifier::None => Formula::True,
                }
            }
            CompiledDetection::Conditional { .. } => Formula::True,
        }
    }

    fn item(&mut self, item: &CompiledDetectionItem) -> Formula {
        let Some(field) = item.field.as_deref() else {
            return self.matcher(&item.matcher, None, false);
        };
        match item.exists {
            Some(false) => return Formula::True,
            Some(true) => return self.atom(Atom::Present(field.to_string())),
            None => {}
        }
        // The one matcher an absent field satisfies.
        if matches!(item.matcher, CompiledMatcher::Null) {
            return Formula::True;
        }
        match self.matcher(&item.matcher, Some(field), false) {
            Formula::True => self.atom(Atom::Present(field.to_string())),
            f => f,
        }
    }

    /// `field`: `None` in keyword scope (any string of the event).
    /// `lowered`: inside a `CaseInsensitiveGroup`, whose children see the
    /// value lowercased: a regex there gives its literals only (they occur
    /// in the lowercased value, which is what the gate compares), never an
    /// atom that would run it on the value as it is. The group's other
    /// children are case-insensitive string matchers (rsigma's invariant),
    /// whose atoms compare the folded value anyway.
    fn matcher(&mut self, m: &CompiledMatcher, field: Option<&str>, lowered: bool) -> Formula {
        match m {
            CompiledMatcher::Exact {
                value,
                case_insensitive,
            } => match (folded(value, *case_insensitive), field) {
                (Some(v), Some(f)) => self.atom(Atom::Equals(f.to_string(), v)),
                // A keyword equal to some string: that string contains it.
                (Some(v), None) => self.atom(Atom::Keyword(v)),
                (None, _) => Formula::True,
            },
            CompiledMatcher::Contains {
                value,
                case_insensitive,
            }
            | CompiledMatcher::StartsWith {
                value,
                case_insensitive,
            }
            | CompiledMatcher::EndsWith {
                value,
                case_insensitive,
            } => self.substring(value, *case_insensitive, field),
            CompiledMatcher::AhoCorasickSet {
                needles,
                case_insensitive,
                ..
            } => {
                let parts = needles
                    .iter()
                    .map(|n| self.substring(n, *case_insensitive, field))
                    .collect();
                Formula::any(parts)
            }
            CompiledMatcher::Regex(re) => {
                let literals = self.regex(re.as_str(), field);
                self.with_item_atom(literals, m, field, lowered)
            }
            CompiledMatcher::RegexSetMatch { set, mode } => {
                let parts = set
                    .patterns()
                    .iter()
                    .map(|p| self.regex(p, field))
                    .collect();
                let literals = by_mode(mode, parts);
                self.with_item_atom(literals, m, field, lowered)
            }
            CompiledMatcher::AnyOf(children) => {
                Formula::any(self.matchers(children, field, lowered))
            }
            CompiledMatcher::AllOf(children) => {
                Formula::all(self.matchers(children, field, lowered))
            }
            CompiledMatcher::CaseInsensitiveGroup { children, mode } => {
                by_mode(mode, self.matchers(children, field, true))
            }
            // Numbers, addresses, field references, timestamps and
            // expansions: no literal, but rsigma's matcher itself decides,
            // once per event whichever rules share it (never inside a
            // group: rsigma's invariant keeps them out).
            CompiledMatcher::NumericEq(_)
            | CompiledMatcher::NumericGt(_)
            | CompiledMatcher::NumericGte(_)
            | CompiledMatcher::NumericLt(_)
            | CompiledMatcher::NumericLte(_)
            | CompiledMatcher::BoolEq(_)
            | CompiledMatcher::Cidr(_)
            | CompiledMatcher::FieldRef { .. }
            | CompiledMatcher::Expand { .. }
            | CompiledMatcher::TimestampPart { .. } => {
                self.with_item_atom(Formula::True, m, field, lowered)
            }
            // A negation implies nothing.
            _ => Formula::True,
        }
    }

    fn matchers(
        &mut self,
        children: &[CompiledMatcher],
        field: Option<&str>,
        lowered: bool,
    ) -> Vec<Formula> {
        children
            .iter()
            .map(|c| self.matcher(c, field, lowered))
            .collect()
    }

    /// `f` and the item atom of `m`, unless `m` sees a lowered value.
    fn with_item_atom(
        &mut self,
        f: Formula,
        m: &CompiledMatcher,
        field: Option<&str>,
        lowered: bool,
    ) -> Formula {
        if lowered {
            return f;
        }
        let item = self.item_atom(m, field);
        Formula::all(vec![f, item])
    }

    /// rsigma's matcher `m` on `field`, as an atom (with the field's
    /// presence, which the first pass can decide); `True` in keyword scope.
    fn item_atom(&mut self, m: &CompiledMatcher, field: Option<&str>) -> Formula {
        let Some(field) = field else {
            return Formula::True;
        };
        let present = self.atom(Atom::Present(field.to_string()));
        let item = self.atom(Atom::Item(field.to_string(), item_key(m)));
        if let Formula::Atom(id) = item {
            self.matchers.entry(id).or_insert_with(|| m.clone());
        }
        Formula::all(vec![present, item])
    }

    fn substring(&mut self, value: &str, case_insensitive: bool, field: Option<&str>) -> Formula {
        match (folded(value, case_insensitive), field) {
            (Some(n), Some(f)) => self.atom(Atom::Contains(f.to_string(), n)),
            (Some(n), None) => self.atom(Atom::Keyword(n)),
            (None, _) => Formula::True,
        }
    }

    /// A regex's mandatory literals, case-sensitive (a `(?i)` pattern's
    /// letters are classes in its syntax tree, not literals).
    fn regex(&mut self, pattern: &str, field: Option<&str>) -> Formula {
        let Ok(hir) = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(pattern)
        else {
            return Formula::True;
        };
        self.hir(&hir, field)
    }

    fn hir(&mut self, hir: &regex_syntax::hir::Hir, field: Option<&str>) -> Formula {
        use regex_syntax::hir::HirKind;
        match hir.kind() {
            HirKind::Literal(lit) => match std::str::from_utf8(&lit.0) {
                Ok(s) if s.len() >= MIN_REGEX_LITERAL => self.substring(s, false, field),
                _ => Formula::True,
            },
            HirKind::Concat(children) => {
                let parts = children.iter().map(|c| self.hir(c, field)).collect();
                Formula::all(parts)
            }
            HirKind::Alternation(children) => {
                let parts = children.iter().map(|c| self.hir(c, field)).collect();
                Formula::any(parts)
            }
            HirKind::Repetition(rep) if rep.min >= 1 => self.hir(&rep.sub, field),
            HirKind::Capture(cap) => self.hir(&cap.sub, field),
            _ => Formula::True,
        }
    }
}

/// What tells one [`Atom::Item`] matcher from another: its variant and
/// parameters as `Debug` prints them (a regex by its pattern, a number by
/// its value), which is all the variants given to [`Builder::item_atom`]
/// hold.
fn item_key(m: &CompiledMatcher) -> String {
    match m {
        CompiledMatcher::Regex(re) => format!("re:{}", re.as_str()),
        CompiledMatcher::RegexSetMatch { set, mode } => {
            format!("set:{mode:?}:{:?}", set.patterns())
        }
        other => format!("{other:?}"),
    }
}

/// A matcher's literal in the form the gate compares folded values with,
/// or `None` when it cannot be folded faithfully.
///
/// A case-insensitive literal is already folded (rsigma's compiler lowers
/// it with the function the values go through). A case-sensitive one that
/// occurs in a value also occurs, character by character, in the folded
/// value: `to_lowercase` maps each character on its own (only a capital
/// sigma looks at its neighbours), an ASCII letter to its ASCII lowercase
/// and a character that is its own lowercase (`é`, a digit, `а` from a
/// lowered rule) to itself. Any other character (a capital `É`, whose
/// image the literal would have to spell) gives up.
fn folded(value: &str, case_insensitive: bool) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if case_insensitive {
        return Some(value.to_string());
    }
    value
        .chars()
        .map(|c| {
            if c.is_ascii() {
                Some(c.to_ascii_lowercase())
            } else {
                let mut lower = c.to_lowercase();
                (lower.next() == Some(c) && lower.next().is_none()).then_some(c)
            }
        })
        .collect()
}

/// Literals searched in one pass, each pattern standing for one atom.
struct Needles {
    automaton: AhoCorasick,
    atoms: Box<[u32]>,
}

impl Needles {
    fn build(mut needles: Vec<(String, u32)>) -> Option<Needles> {
        if needles.is_empty() || needles.len() > MAX_NEEDLES {
            return None;
        }
        needles.sort();
        let patterns: Vec<&str> = needles.iter().map(|(n, _)| n.as_str()).collect();
        // Overlapping search needs the standard match kind; needles are
        // folded, so an ASCII value is searched in place.
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .ascii_case_insensitive(true)
            .kind(Some(if patterns.len() > DFA_MAX_NEEDLES {
                AhoCorasickKind::ContiguousNFA
            } else {
                AhoCorasickKind::DFA
            }))
            .build(&patterns)
            .or_else(|_| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .ascii_case_insensitive(true)
                    .build(&patterns)
            })
            .ok()?;
        Some(Needles {
            automaton,
            atoms: needles.into_iter().map(|(_, a)| a).collect(),
        })
    }

    /// `value` as it is; folded here when it is not ASCII.
    fn scan(&self, value: &str, bits: &mut StateBits) {
        if value.is_ascii() {
            self.scan_folded(value, bits);
        } else {
            self.scan_folded(&ascii_lowercase_cow(value), bits);
        }
    }

    fn scan_folded(&self, value: &str, bits: &mut StateBits) {
        for m in self.automaton.find_overlapping_iter(value) {
            bits.learn(self.atoms[m.pattern().as_usize()], true);
        }
    }
}

/// How an atom is decided when a formula asks for it.
enum Check {
    Present,
    Equals(Box<str>),
    Contains(memmem::Finder<'static>),
    Keyword(memmem::Finder<'static>),
    Item(CompiledMatcher),
}

/// An atom: the field it reads (an index into [`Gate::fields`]; unused for
/// keywords) and its check.
struct AtomCheck {
    field: u32,
    check: Check,
}

/// What the first pass reads of one field: the atoms of the rules' filing
/// clauses only.
struct Probe {
    field: u32,
    present: Option<u32>,
    equals: HashMap<String, u32, ahash::RandomState>,
    contains: Option<Needles>,
}

/// One rule group's gate: its atoms and each rule's formula.
///
/// Two passes per event. The first decides the atoms of each rule's
/// filing clause (a disjunction its formula implies, the most selective
/// one) with one automaton per field, as rsigma's index does: a rule none
/// of whose filing atoms holds cannot match. The second checks the whole
/// formula of each rule left, deciding its other atoms only when asked
/// (a substring search in the folded value, remembered for the event):
/// most rules fail on their first other atom.
pub(crate) struct Gate {
    fields: Vec<String>,
    /// By field: whether it is a lowered alias (`crate::lowered`), whose
    /// values come folded.
    lowered: Vec<bool>,
    probes: Vec<Probe>,
    keywords: Option<Needles>,
    atoms: Vec<AtomCheck>,
    /// Atoms the first pass decides (bit set): one it did not set is false.
    first_pass: Box<[u64]>,
    formulas: Vec<Formula>,
    /// For each atom, the rules filed under it.
    filed: Vec<Box<[u32]>>,
    /// Rules whose formula is `True`: evaluated for every event.
    always: Box<[u32]>,
}

/// A detector's reusable buffers for one gate.
#[derive(Default)]
pub(crate) struct Scratch {
    state: StateBits,
    seen: Vec<u64>,
    /// The rules to evaluate for the last event, ascending.
    pub(crate) candidates: Vec<u32>,
}

/// Atoms decided for the current event: `known` and `value` bits, and the
/// atoms touched (to clear them for the next event).
#[derive(Default)]
struct StateBits {
    known: Vec<u64>,
    value: Vec<u64>,
    touched: Vec<u32>,
}

/// One event's atoms and the texts of the fields read so far.
struct State<'s, 'e> {
    bits: &'s mut StateBits,
    /// By field: its texts as rsigma coerces them, then folded (on demand).
    texts: Vec<Option<Texts<'e>>>,
}

/// A field's texts for one event.
#[derive(Default)]
struct Texts<'e> {
    present: bool,
    raw: TextList<'e>,
    folded: Folded<'e>,
}

/// Most fields hold one string: no list is allocated for it.
#[derive(Default)]
enum TextList<'e> {
    #[default]
    Empty,
    One(Cow<'e, str>),
    Many(Vec<Cow<'e, str>>),
}

impl<'e> TextList<'e> {
    fn as_slice(&self) -> &[Cow<'e, str>] {
        match self {
            TextList::Empty => &[],
            TextList::One(t) => std::slice::from_ref(t),
            TextList::Many(v) => v,
        }
    }

    fn push(&mut self, t: Cow<'e, str>) {
        *self = match std::mem::take(self) {
            TextList::Empty => TextList::One(t),
            TextList::One(first) => TextList::Many(vec![first, t]),
            TextList::Many(mut v) => {
                v.push(t);
                TextList::Many(v)
            }
        };
    }
}

/// The folded texts: not computed yet, the raw ones (nothing to fold, or a
/// lowered alias field), or their own copy.
#[derive(Default)]
enum Folded<'e> {
    #[default]
    Unknown,
    Raw,
    Own(TextList<'e>),
}

impl<'e> Texts<'e> {
    fn folded(&mut self) -> &[Cow<'e, str>] {
        if let Folded::Unknown = self.folded {
            let changes =
                |t: &Cow<'e, str>| !t.is_ascii() || t.bytes().any(|b| b.is_ascii_uppercase());
            self.folded = if self.raw.as_slice().iter().any(changes) {
                let mut own = TextList::Empty;
                for t in self.raw.as_slice() {
                    own.push(Cow::Owned(ascii_lowercase_cow(t).into_owned()));
                }
                Folded::Own(own)
            } else {
                Folded::Raw
            };
        }
        match &self.folded {
            Folded::Own(own) => own.as_slice(),
            _ => self.raw.as_slice(),
        }
    }
}

impl StateBits {
    fn learn(&mut self, atom: u32, value: bool) {
        let (w, m) = ((atom / 64) as usize, 1u64 << (atom % 64));
        if self.known[w] & m == 0 {
            self.known[w] |= m;
            self.touched.push(atom);
        }
        if value {
            self.value[w] |= m;
        }
    }
}

impl Gate {
    pub(crate) fn build(rules: &[CompiledRule]) -> Gate {
        let mut b = Builder::default();
        let mut formulas: Vec<Formula> = rules.iter().map(|r| b.rule(r)).collect();
        let atom_count = b.atoms.len();

        // Each rule is filed under the atoms of one clause; those atoms are
        // decided by the first pass.
        let clauses: Vec<Option<Vec<u32>>> = formulas.iter().map(|f| f.clause(&b.atoms)).collect();
        let mut first = vec![false; atom_count];
        for c in clauses.iter().flatten() {
            for &a in c {
                first[a as usize] = true;
            }
        }

        let mut matchers = std::mem::take(&mut b.matchers);
        let mut fields: Vec<String> = Vec::new();
        let mut field_of: HashMap<String, u32> = HashMap::new();
        let mut atoms = Vec::with_capacity(atom_count);
        for atom in &b.atoms {
            let name = match atom {
                Atom::Present(f) | Atom::Equals(f, _) | Atom::Contains(f, _) | Atom::Item(f, _) => {
                    Some(f)
                }
                Atom::Keyword(_) => None,
            };
            let field = name.map_or(u32::MAX, |f| {
                *field_of.entry(f.clone()).or_insert_with(|| {
                    fields.push(f.clone());
                    fields.len() as u32 - 1
                })
            });
            let check = match atom {
                Atom::Present(_) => Check::Present,
                Atom::Equals(_, v) => Check::Equals(v.as_str().into()),
                Atom::Contains(_, n) => Check::Contains(memmem::Finder::new(n).into_owned()),
                Atom::Keyword(n) => Check::Keyword(memmem::Finder::new(n).into_owned()),
                Atom::Item(..) => match matchers.remove(&(atoms.len() as u32)) {
                    Some(m) => Check::Item(m),
                    // Every item atom has its matcher (item_atom).
                    None => Check::Present,
                },
            };
            atoms.push(AtomCheck { field, check });
        }

        // The first pass's structures, by field.
        let mut probes: Vec<Probe> = Vec::new();
        let mut probe_of: HashMap<u32, usize> = HashMap::new();
        let mut field_needles: Vec<Vec<(String, u32)>> = Vec::new();
        let mut keyword_needles: Vec<(String, u32)> = Vec::new();
        for (id, atom) in b.atoms.iter().enumerate() {
            if !first[id] {
                continue;
            }
            let id = id as u32;
            if let Atom::Keyword(n) = atom {
                keyword_needles.push((n.clone(), id));
                continue;
            }
            let field = atoms[id as usize].field;
            let p = *probe_of.entry(field).or_insert_with(|| {
                probes.push(Probe {
                    field,
                    present: None,
                    equals: HashMap::default(),
                    contains: None,
                });
                field_needles.push(Vec::new());
                probes.len() - 1
            });
            match atom {
                Atom::Present(_) => probes[p].present = Some(id),
                Atom::Equals(_, v) => {
                    probes[p].equals.insert(v.clone(), id);
                }
                Atom::Contains(_, n) => field_needles[p].push((n.clone(), id)),
                // Keywords are taken above; item atoms are never in a
                // clause (`Formula::clause`), so never here.
                Atom::Keyword(_) | Atom::Item(..) => {}
            }
        }
        // A literal set too large for an automaton: its atoms become true
        // (the rules using them are evaluated more often, never less).
        let mut unbuilt: Vec<u32> = Vec::new();
        for (probe, needles) in probes.iter_mut().zip(field_needles) {
            let ids: Vec<u32> = needles.iter().map(|(_, a)| *a).collect();
            probe.contains = Needles::build(needles);
            if probe.contains.is_none() {
                unbuilt.extend(ids);
            }
        }
        let keyword_ids: Vec<u32> = keyword_needles.iter().map(|(_, a)| *a).collect();
        let keywords = Needles::build(keyword_needles);
        if keywords.is_none() {
            unbuilt.extend(keyword_ids);
        }
        let mut clauses = clauses;
        if !unbuilt.is_empty() {
            tracing::warn!(
                atoms = unbuilt.len(),
                "a literal set was too large to index; rules using it are evaluated more often"
            );
            for f in &mut formulas {
                *f = assume_true(std::mem::replace(f, Formula::True), &unbuilt);
            }
            for a in &unbuilt {
                first[*a as usize] = false;
            }
            clauses = formulas.iter().map(|f| f.clause(&b.atoms)).collect();
            // Filing atoms must be decided by the first pass; a clause that
            // now names another atom files its rule as always evaluated.
            for c in clauses.iter_mut() {
                if c.as_ref()
                    .is_some_and(|c| c.iter().any(|&a| !first[a as usize]))
                {
                    *c = None;
                }
            }
        }

        let mut filed: Vec<Vec<u32>> = vec![Vec::new(); atom_count];
        let mut always = Vec::new();
        for (r, clause) in clauses.into_iter().enumerate() {
            match clause {
                Some(clause) => clause
                    .into_iter()
                    .for_each(|a| filed[a as usize].push(r as u32)),
                None => always.push(r as u32),
            }
        }
        let mut first_pass = vec![0u64; atom_count.div_ceil(64)];
        for (a, _) in first.iter().enumerate().filter(|(_, f)| **f) {
            first_pass[a / 64] |= 1 << (a % 64);
        }
        let lowered = fields
            .iter()
            .map(|f| crate::lowered::aliased(f).is_some())
            .collect();
        Gate {
            fields,
            lowered,
            probes,
            keywords,
            atoms,
            first_pass: first_pass.into_boxed_slice(),
            formulas,
            filed: filed.into_iter().map(Vec::into_boxed_slice).collect(),
            always: always.into_boxed_slice(),
        }
    }

    /// Fills `scratch.candidates` with the rules whose formula holds on
    /// `event`, ascending (rsigma's own result order).
    pub(crate) fn candidates(&self, event: &impl SigmaEvent, scratch: &mut Scratch) {
        let words = self.atoms.len().div_ceil(64);
        let bits = &mut scratch.state;
        if bits.known.len() < words {
            bits.known.resize(words, 0);
            bits.value.resize(words, 0);
        }
        let rule_words = self.formulas.len().div_ceil(64);
        if scratch.seen.len() < rule_words {
            scratch.seen.resize(rule_words, 0);
        }
        scratch.candidates.clear();
        let mut state = State {
            bits,
            texts: std::iter::repeat_with(|| None)
                .take(self.fields.len())
                .collect(),
        };

        // First pass: the filing atoms.
        for probe in &self.probes {
            let texts = self.texts(event, probe.field, &mut state.texts);
            if !texts.present {
                continue;
            }
            let bits = &mut *state.bits;
            if let Some(a) = probe.present {
                bits.learn(a, true);
            }
            if !probe.equals.is_empty() {
                for t in texts.folded() {
                    if let Some(&a) = probe.equals.get(t.as_ref()) {
                        bits.learn(a, true);
                    }
                }
            }
            if let Some(n) = &probe.contains {
                for t in texts.raw.as_slice() {
                    n.scan(t, bits);
                }
            }
        }
        if let Some(k) = &self.keywords {
            let bits = &mut *state.bits;
            event.visit_string_values(&mut |s| k.scan(s, bits));
        }

        // The rules filed under an atom that holds, then those always
        // evaluated, each if its whole formula holds.
        for &a in state.bits.touched.iter() {
            if !bit(&state.bits.value, a) {
                continue;
            }
            for &r in self.filed[a as usize].iter() {
                let word = &mut scratch.seen[(r / 64) as usize];
                let mask = 1u64 << (r % 64);
                if *word & mask == 0 {
                    *word |= mask;
                    scratch.candidates.push(r);
                }
            }
        }
        for &r in scratch.candidates.iter() {
            scratch.seen[(r / 64) as usize] = 0;
        }
        scratch.candidates.extend_from_slice(&self.always);
        scratch.candidates.sort_unstable();
        let mut candidates = std::mem::take(&mut scratch.candidates);
        candidates.retain(|&r| self.holds(&self.formulas[r as usize], event, &mut state));
        scratch.candidates = candidates;

        let bits = state.bits;
        for &a in bits.touched.iter() {
            let w = (a / 64) as usize;
            bits.known[w] = 0;
            bits.value[w] = 0;
        }
        bits.touched.clear();
    }

    /// The texts of field `f` for this event, read once.
    fn texts<'a, 'e>(
        &self,
        event: &'e impl SigmaEvent,
        f: u32,
        texts: &'a mut [Option<Texts<'e>>],
    ) -> &'a mut Texts<'e> {
        texts[f as usize].get_or_insert_with(|| match event.get_field(&self.fields[f as usize]) {
            Some(value) => {
                let mut raw = TextList::Empty;
                into_texts(value, &mut raw);
                Texts {
                    present: true,
                    raw,
                    // A lowered alias field's value is folded already
                    // (crate::lowered).
                    folded: if self.lowered[f as usize] {
                        Folded::Raw
                    } else {
                        Folded::Unknown
                    },
                }
            }
            None => Texts::default(),
        })
    }

    fn holds<'e>(
        &self,
        f: &Formula,
        event: &'e impl SigmaEvent,
        state: &mut State<'_, 'e>,
    ) -> bool {
        match f {
            Formula::True => true,
            Formula::Atom(a) => self.atom(*a, event, state),
            Formula::All(parts) => parts.iter().all(|p| self.holds(p, event, state)),
            Formula::Any(parts) => parts.iter().any(|p| self.holds(p, event, state)),
        }
    }

    fn atom<'e>(&self, a: u32, event: &'e impl SigmaEvent, state: &mut State<'_, 'e>) -> bool {
        if bit(&self.first_pass, a) || bit(&state.bits.known, a) {
            return bit(&state.bits.value, a);
        }
        let check = &self.atoms[a as usize];
        let value = match &check.check {
            Check::Keyword(finder) => {
                let mut found = false;
                event.visit_string_values(&mut |s| {
                    found = found || finder.find(ascii_lowercase_cow(s).as_bytes()).is_some();
                });
                found
            }
            Check::Present => self.texts(event, check.field, &mut state.texts).present,
            Check::Equals(v) => {
                let texts = self.texts(event, check.field, &mut state.texts);
                texts.present && texts.folded().iter().any(|t| t.as_ref() == v.as_ref())
            }
            Check::Contains(finder) => {
                let texts = self.texts(event, check.field, &mut state.texts);
                texts.present
                    && texts
                        .folded()
                        .iter()
                        .any(|t| finder.find(t.as_bytes()).is_some())
            }
            Check::Item(m) => event
                .get_field(&self.fields[check.field as usize])
                .is_some_and(|v| m.matches(&v, event)),
        };
        state.bits.learn(a, value);
        value
    }

    /// Rules, atoms, and rules evaluated for every event (for the docs and
    /// tests).
    #[cfg(test)]
    pub(crate) fn shape(&self) -> (usize, usize, usize) {
        (self.formulas.len(), self.atoms.len(), self.always.len())
    }
}

/// `f` with the given atoms replaced by `True`.
fn assume_true(f: Formula, atoms: &[u32]) -> Formula {
    match f {
        Formula::Atom(a) if atoms.contains(&a) => Formula::True,
        Formula::All(parts) => Formula::all(
            parts
                .into_vec()
                .into_iter()
                .map(|p| assume_true(p, atoms))
                .collect(),
        ),
        Formula::Any(parts) => Formula::any(
            parts
                .into_vec()
                .into_iter()
                .map(|p| assume_true(p, atoms))
                .collect(),
        ),
        other => other,
    }
}

/// Every text a matcher compares a value by, as rsigma coerces it: strings
/// as they are, numbers and booleans by their text, lists member by member.
fn into_texts<'e>(value: EventValue<'e>, out: &mut TextList<'e>) {
    match value {
        EventValue::Str(s) => out.push(s),
        EventValue::Int(n) => out.push(Cow::Owned(n.to_string())),
        EventValue::Float(f) => out.push(Cow::Owned(f.to_string())),
        EventValue::Bool(b) => out.push(Cow::Borrowed(if b { "true" } else { "false" })),
        EventValue::Array(items) => items.into_iter().for_each(|i| into_texts(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsigma_eval::JsonEvent;
    use serde_json::json;

    fn rules(yaml: &str) -> Vec<CompiledRule> {
        let collection = rsigma_parser::parse_sigma_yaml(yaml).expect("valid Sigma");
        collection
            .rules
            .iter()
            .map(|r| rsigma_eval::compile_rule(r).expect("compiles"))
            .collect()
    }

    fn rule(detection: &str) -> Vec<CompiledRule> {
        rules(&format!(
            "title: t\nlogsource:\n    category: process_creation\ndetection:\n{detection}"
        ))
    }

    /// (gate's candidates, rules that match when all are evaluated).
    fn gated(rules: &[CompiledRule], event: serde_json::Value) -> (Vec<u32>, Vec<u32>) {
        let gate = Gate::build(rules);
        let view = JsonEvent::borrow(&event);
        let mut scratch = Scratch::default();
        gate.candidates(&view, &mut scratch);
        let matching = (0..rules.len() as u32)
            .filter(|&r| rsigma_eval::evaluate_rule(&rules[r as usize], &view).is_some())
            .collect();
        (scratch.candidates.clone(), matching)
    }

    /// The gate lets through exactly `expected`, and those are the rules
    /// that match.
    fn assert_gated(rules: &[CompiledRule], event: serde_json::Value, expected: &[u32]) {
        assert_eq!(gated(rules, event), (expected.to_vec(), expected.to_vec()));
    }

    const CMD_AND_RARE: &str = "    img:\n        Image|endswith: '\\cmd.exe'\n    cli:\n        CommandLine|contains: 'vssadmin delete'\n    condition: img and cli\n";

    #[test]
    fn an_and_needs_every_side() {
        let r = rule(CMD_AND_RARE);
        // rsigma's index keeps one side; the gate refuses an event with
        // only the image.
        assert_gated(
            &r,
            json!({"Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd /c dir"}),
            &[],
        );
        assert_gated(
            &r,
            json!({"Image": "C:\\WINDOWS\\System32\\CMD.EXE", "CommandLine": "cmd /c VSSADMIN Delete shadows"}),
            &[0],
        );
    }

    #[test]
    fn a_negation_or_a_missing_field_test_never_refuses() {
        let r = rule(
            "    sel:\n        Image|endswith: '\\x.exe'\n    filter:\n        User: 'SYSTEM'\n    condition: not filter\n",
        );
        assert_eq!(Gate::build(&r).shape().2, 1, "always evaluated");
        let r = rule(
            "    sel:\n        Image|endswith: '\\x.exe'\n    gone:\n        Parent: null\n    condition: sel and gone\n",
        );
        assert_gated(&r, json!({"Image": "c:\\X.exe"}), &[0]);
        let r = rule(
            "    sel:\n        Image|endswith: '\\x.exe'\n    gone:\n        Parent|exists: false\n    condition: sel and gone\n",
        );
        assert_gated(&r, json!({"Image": "c:\\X.exe"}), &[0]);
    }

    #[test]
    fn regex_literals_are_case_sensitive_and_mandatory() {
        let r = rule(
            "    sel:\n        CommandLine|re: 'Invoke-(Mimikatz|Kerberoast)'\n    condition: sel\n",
        );
        assert_gated(
            &r,
            json!({"CommandLine": "powershell Invoke-Kerberoast -x"}),
            &[0],
        );
        assert_gated(
            &r,
            json!({"CommandLine": "powershell Invoke-Expression"}),
            &[],
        );
        // `(?i)`: the letters are classes, not literals: no literal gate,
        // still matched.
        let r = rule("    sel:\n        CommandLine|re|i: 'invoke-mimikatz'\n    condition: sel\n");
        assert_gated(&r, json!({"CommandLine": "INVOKE-MIMIKATZ"}), &[0]);
    }

    #[test]
    fn keywords_numbers_and_lists() {
        let r = rules(
            "title: k\nlogsource:\n    product: linux\ndetection:\n    keywords:\n        - 'Failed password'\n    condition: keywords\n---\ntitle: n\nlogsource:\n    product: windows\ndetection:\n    sel:\n        EventID: 4688\n        Tags|contains: 'ADMIN'\n    condition: sel\n",
        );
        assert_gated(
            &r,
            json!({"msg": "sshd: FAILED PASSWORD for root", "EventID": 4688, "Tags": ["user", "domain admins"]}),
            &[0, 1],
        );
        assert_gated(
            &r,
            json!({"msg": "accepted", "EventID": 4688, "Tags": ["user"]}),
            &[],
        );
    }

    #[test]
    fn one_of_them_and_all_of_a_pattern() {
        let r = rule(
            "    sel_a:\n        CommandLine|contains: 'alpha'\n    sel_b:\n        CommandLine|contains: 'beta'\n    condition: all of sel_*\n",
        );
        let (cand, _) = gated(&r, json!({"CommandLine": "alpha"}));
        assert!(cand.is_empty());
        assert_gated(&r, json!({"CommandLine": "beta alpha"}), &[0]);
        let r = rule(
            "    sel_a:\n        CommandLine|contains: 'alpha'\n    sel_b:\n        CommandLine|contains: 'beta'\n    condition: 1 of them\n",
        );
        assert_gated(&r, json!({"CommandLine": "BETA"}), &[0]);
    }

    #[test]
    fn non_ascii_values_are_folded_as_rsigma_folds_them() {
        let r = rule(
            "    sel:\n        CommandLine|contains: 'ÉTÉ'\n        Image|endswith: 'X.EXE'\n    condition: sel\n",
        );
        assert_gated(
            &r,
            json!({"CommandLine": "rapport été", "Image": "c:\\dossier\\Ärger\\x.exe"}),
            &[0],
        );
    }

    #[test]
    fn a_regex_in_a_case_insensitive_group_sees_the_lowered_value() {
        // `i*x` becomes a `(?i)` regex, grouped with the plain `zzz` in one
        // case-insensitive group that lowers the value first: `İ` lowers
        // to `i` and a combining dot, which the regex then matches, where
        // it would not match `İ` itself.
        let r = rule(
            "    sel:\n        CommandLine|contains:\n            - 'i*x'\n            - 'zzz'\n    condition: sel\n",
        );
        let (cand, hit) = gated(&r, json!({"CommandLine": "İ x"}));
        assert_eq!(hit, vec![0], "rsigma matches the lowered value");
        assert_eq!(cand, vec![0]);
    }

    #[test]
    fn candidates_come_in_rule_order() {
        let r = rules(
            "title: a\ndetection:\n    s:\n        CommandLine|contains: 'zzz'\n    condition: s\n---\ntitle: b\ndetection:\n    s:\n        Image|endswith: 'a.exe'\n    condition: s\n---\ntitle: c\ndetection:\n    s:\n        CommandLine|contains: 'yyy'\n    condition: s\n",
        );
        assert_gated(
            &r,
            json!({"CommandLine": "yyy zzz", "Image": "a.exe"}),
            &[0, 1, 2],
        );
    }
}
