//! The figures and the markdown table they are printed as: ours, the
//! reference's, and how many times better (or worse) ours is.

use crate::Kind;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

#[derive(Clone, Copy)]
pub enum Unit {
    Time,
    PerSec,
    MBps,
    KiB,
    /// A plain ratio (`1.30×`).
    Ratio,
}

#[derive(Clone)]
pub enum Figure {
    Percentiles {
        p50: Duration,
        p90: Duration,
        p99: Duration,
        n: usize,
    },
    Value(f64),
    /// The server could not do it.
    Failed(String),
}

impl Figure {
    pub fn from_samples(mut v: Vec<Duration>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort();
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Figure::Percentiles { p50: at(0.5), p90: at(0.9), p99: at(0.99), n: v.len() })
    }
    pub fn headline(&self) -> f64 {
        match self {
            Figure::Percentiles { p50, .. } => p50.as_secs_f64(),
            Figure::Value(v) => *v,
            Figure::Failed(_) => f64::NAN,
        }
    }
    pub fn show(&self, unit: Unit) -> String {
        match (self, unit) {
            (Figure::Percentiles { p50, p90, p99, n }, _) => {
                format!("{} / {} / {} (n={n})", dur(*p50), dur(*p90), dur(*p99))
            }
            (Figure::Value(v), Unit::PerSec) => format!("{v:.0} /s"),
            (Figure::Value(v), Unit::MBps) => format!("{v:.0} MB/s"),
            (Figure::Value(v), Unit::KiB) => format!("{v:.1} KiB"),
            (Figure::Value(v), Unit::Ratio) => format!("{v:.2}×"),
            (Figure::Value(v), Unit::Time) => dur(Duration::from_secs_f64(*v)),
            (Figure::Failed(why), _) => why.clone(),
        }
    }
}

pub fn dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 { format!("{us:.0} µs") } else { format!("{:.2} ms", us / 1000.0) }
}

/// One line of the table.
pub struct Row {
    pub name: String,
    unit: Unit,
    better: Better,
    pub ours: Option<Figure>,
    pub reference: Option<Figure>,
}

/// Everything measured, keyed by row name, in first-seen order.
#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// Modules our server compiled during the cold starts (must be 0).
    pub modules_compiled: Option<u64>,
}

impl Table {
    pub fn put(&mut self, kind: Kind, name: &str, unit: Unit, better: Better, fig: Option<Figure>) {
        let idx = match self.rows.iter().position(|r| r.name == name) {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    name: name.to_owned(),
                    unit,
                    better,
                    ours: None,
                    reference: None,
                });
                self.rows.len() - 1
            }
        };
        match kind {
            Kind::Ours => self.rows[idx].ours = fig,
            Kind::Reference => self.rows[idx].reference = fig,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    pub fn print(&self) {
        println!("| measurement | ours | reference | ours vs reference |");
        println!("|---|---|---|---|");
        for r in &self.rows {
            let show = |f: &Option<Figure>| f.as_ref().map_or("–".to_owned(), |f| f.show(r.unit));
            println!("| {} | {} | {} | {} |", r.name, show(&r.ours), show(&r.reference), ratio(r));
        }
        for n in &self.notes {
            println!("\n{n}");
        }
    }
}

/// "N× better" in the row's own sense (faster, more, smaller), p50 for latencies.
pub fn ratio(r: &Row) -> String {
    let (Some(o), Some(f)) = (&r.ours, &r.reference) else { return "–".into() };
    let (o, f) = (o.headline(), f.headline());
    if !(o > 0.0 && f > 0.0) {
        return "–".into();
    }
    let x = if r.better == Better::Lower { f / o } else { o / f };
    let (good, bad) = match r.unit {
        Unit::Time => ("faster", "slower"),
        Unit::KiB | Unit::Ratio => ("smaller", "larger"),
        Unit::PerSec | Unit::MBps => ("higher", "lower"),
    };
    if x >= 1.0 { format!("**{}× {good}**", sig(x)) } else { format!("{}× {bad}", sig(1.0 / x)) }
}

pub fn sig(x: f64) -> String {
    if x >= 10.0 { format!("{x:.0}") } else { format!("{x:.1}") }
}
