//! Sparse weights from a system under test: `(token id, weight)` pairs checked and sorted.

use crate::pipeline::Vector;

/// Turns `(id, weight)` pairs in any order into a sparse value sorted by id. A negative or out-of-range id,
/// or an id given twice, is a message (the text fails with it), never silently merged.
pub fn sparse_from_pairs(pairs: impl IntoIterator<Item = (i64, f32)>) -> std::result::Result<Vector, String> {
    let mut out: Vec<(u32, f32)> = Vec::new();
    for (id, w) in pairs {
        let id = u32::try_from(id).map_err(|_| format!("token id {id} is not a non-negative 32-bit integer"))?;
        out.push((id, w));
    }
    out.sort_by_key(|(id, _)| *id);
    if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("token id {} appears more than once", w[0].0));
    }
    Ok(Vector::Sparse(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_and_refuses_duplicates_and_negatives() {
        assert_eq!(sparse_from_pairs([(7, 0.5), (3, 0.25)]), Ok(Vector::Sparse(vec![(3, 0.25), (7, 0.5)])));
        assert!(sparse_from_pairs([(3, 0.5), (3, 0.25)]).unwrap_err().contains("more than once"));
        assert!(sparse_from_pairs([(-1, 0.5)]).unwrap_err().contains("-1"));
    }
}
