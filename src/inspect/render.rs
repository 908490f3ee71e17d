//! An [`Inspection`] as text for a terminal: settings merged where the pipelines agree, so what differs
//! between them stands out; tokens once per distinct tokenization.

use std::fmt::Write;

use super::{Inspection, OutputView, PipelineView, Setting};

/// Tokens shown; longer lists show these and the last (`--json` has them all, with their offsets).
const MAX_TOKENS: usize = 48;
/// Characters per line of the token list.
const LINE: usize = 110;

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

    let _ = writeln!(s, "\nsettings (pipelines that agree share a line)");
    let width = i.pipelines.iter().map(|p| p.pipeline.name().len()).max().unwrap_or(0);
    let names: Vec<&'static str> = i.pipelines[0].settings.iter().map(|x| x.name).collect();
    for name in names {
        // Pipelines grouped by equal setting, in pipeline order.
        let mut groups: Vec<(Vec<&str>, &Setting)> = Vec::new();
        for p in &i.pipelines {
            let Some(x) = p.settings.iter().find(|x| x.name == name) else { continue };
            match groups.iter_mut().find(|(_, g)| *g == x) {
                Some((who, _)) => who.push(p.pipeline.name()),
                None => groups.push((vec![p.pipeline.name()], x)),
            }
        }
        if let [(_, x)] = groups.as_slice() {
            let _ = writeln!(s, "  {name:<12} {}  ← {}", x.value, x.source);
            continue;
        }
        let _ = writeln!(s, "  {name}");
        let who_width = groups.iter().map(|(who, _)| who.join(", ").len()).max().unwrap_or(width);
        for (who, x) in groups {
            let _ = writeln!(s, "    {:<who_width$}  {}  ← {}", who.join(", "), x.value, x.source);
        }
    }

    // Tokens, once per distinct (text seen, ids), as piece(id) wrapped to the line; `*` marks special tokens.
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
            "\ntokens of {}: {}{}; text seen {:?}",
            who.join(", "),
            rep.tokens.len(),
            if rep.truncated { ", cut at the max length" } else { "" },
            rep.prepared
        );
        let mut line = String::from(" ");
        for (k, t) in rep.tokens.iter().enumerate() {
            if k == MAX_TOKENS && rep.tokens.len() > MAX_TOKENS + 1 {
                line.push_str(&format!(" … {} more, last {:?}({})", rep.tokens.len() - MAX_TOKENS - 1, rep.tokens[rep.tokens.len() - 1].piece, rep.tokens[rep.tokens.len() - 1].id));
                break;
            }
            let shown = format!(" {:?}({}){}", t.piece, t.id, if t.special { "*" } else { "" });
            if line.chars().count() + shown.chars().count() > LINE {
                let _ = writeln!(s, "{line}");
                line = String::from(" ");
            }
            line.push_str(&shown);
        }
        let _ = writeln!(s, "{line}");
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
