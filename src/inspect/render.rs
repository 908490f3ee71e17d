//! An [`Inspection`] as text for a terminal: settings merged where the pipelines agree, so what differs
//! between them stands out; tokens once per distinct tokenization.

use std::fmt::Write;

use super::{Inspection, OutputView, PipelineView, Setting};

/// Tokens listed in full up to this many; longer lists show their head and tail.
const MAX_TOKENS: usize = 16;

/// The inspection as text, for a terminal.
pub fn text(i: &Inspection) -> String {
    let mut s = String::new();
    let m = &i.model;
    let _ = writeln!(
        s,
        "model   {} ({}: {} layers, hidden {}, {} heads, up to {} tokens)",
        m.name, m.model_type, m.layers, m.hidden, m.heads, m.max_tokens
    );
    for setting in [&i.stack, &i.dtype] {
        let _ = writeln!(s, "{:<7} {}  ← {}", setting.name, setting.value, setting.source);
    }
    let _ = writeln!(s, "text    {:?}", i.text);
    for n in &i.not_run {
        let _ = writeln!(s, "not run {}: {}", n.pipeline, n.reason);
    }
    if i.pipelines.is_empty() {
        return s;
    }

    let _ = writeln!(s, "\nsettings (one line when every pipeline agrees)");
    let width = i.pipelines.iter().map(|p| p.pipeline.name().len()).max().unwrap_or(0);
    let names: Vec<&'static str> = i.pipelines[0].settings.iter().map(|x| x.name).collect();
    for name in names {
        let per: Vec<(&PipelineView, Option<&Setting>)> =
            i.pipelines.iter().map(|p| (p, p.settings.iter().find(|x| x.name == name))).collect();
        let first = per[0].1;
        if per.iter().all(|(_, x)| *x == first) {
            if let Some(x) = first {
                let _ = writeln!(s, "  {name:<12} {}  ← {}", x.value, x.source);
            }
            continue;
        }
        let _ = writeln!(s, "  {name}");
        for (p, x) in per {
            if let Some(x) = x {
                let _ = writeln!(s, "    {:<width$}  {}  ← {}", p.pipeline.name(), x.value, x.source);
            }
        }
    }

    // Tokens, once per distinct (text seen, ids).
    let mut groups: Vec<(Vec<&PipelineView>, &PipelineView)> = Vec::new();
    for p in &i.pipelines {
        let key = |v: &PipelineView| (v.prepared.clone(), v.tokens.iter().map(|t| t.id).collect::<Vec<_>>());
        match groups.iter_mut().find(|(_, rep)| key(rep) == key(p)) {
            Some((members, _)) => members.push(p),
            None => groups.push((vec![p], p)),
        }
    }
    for (members, rep) in &groups {
        let who: Vec<&str> = members.iter().map(|p| p.pipeline.name()).collect();
        let _ = writeln!(
            s,
            "\ntokens of {} — {} tokens{}; text seen {:?}",
            who.join(", "),
            rep.tokens.len(),
            if rep.truncated { ", cut at the max length" } else { "" },
            rep.prepared
        );
        let _ = writeln!(s, "  {:>5}  {:>8}  {:<20} {:>11}  special", "#", "id", "piece", "chars");
        let n = rep.tokens.len();
        for (k, t) in rep.tokens.iter().enumerate() {
            if n > MAX_TOKENS && k == MAX_TOKENS - 4 {
                let _ = writeln!(s, "  {:>5}  …", "");
            }
            if n > MAX_TOKENS && (MAX_TOKENS - 4..n - 4).contains(&k) {
                continue;
            }
            let chars = format!("{}..{}", t.start, t.end);
            let _ = writeln!(s, "  {k:>5}  {:>8}  {:<20} {chars:>11}  {}", t.id, format!("{:?}", t.piece), if t.special { "yes" } else { "" });
        }
    }

    if !i.other_stack.is_empty() {
        let _ = writeln!(s, "\nunder {}", i.other_stack[0].stack);
        for d in &i.other_stack {
            let _ = writeln!(s, "  {:<width$}  {}{}", d.pipeline.name(), if d.differs { "DIFFERS: " } else { "" }, d.verdict);
        }
    }

    let _ = writeln!(s, "\noutputs");
    for p in &i.pipelines {
        let shown = match &p.output {
            OutputView::Dense { width: w, norm, first } => format!("{w} components, norm {norm:.6}, first {}", floats(first)),
            OutputView::Sparse { count, top } => {
                let top: Vec<String> = top.iter().map(|(id, piece, w)| format!("{id} {piece:?} {w:.4}")).collect();
                format!("{count} weights, heaviest {}", top.join(", "))
            }
            OutputView::Multi { rows, width: w, first } => format!("{rows} × {w}, first row {}", floats(first)),
        };
        let _ = writeln!(s, "  {:<width$}  {shown}", p.pipeline.name());
    }
    if !i.cosines.is_empty() {
        let _ = writeln!(s, "\ncosine between pipelines");
        for c in &i.cosines {
            let _ = writeln!(s, "  {} · {}  {:.6}", c.a, c.b, c.cosine);
        }
    }
    s
}

fn floats(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:+.4}")).collect();
    format!("[{}, …]", parts.join(", "))
}
