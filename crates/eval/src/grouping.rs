//! From slices to songs: the argmax of each slice, and slices grouped into songs by a key with
//! each song's label taken from its first slice (as the paper's `predict_artist`).

use ndarray::ArrayView2;

/// Index of the first maximum of `v` (ties to the smallest index, as numpy's `argmax`); 0
/// for an empty slice. A NaN never wins against a number that comes before it.
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// The predicted class of every row of `probs` (`[slices, classes]`): its [`argmax`].
pub fn slice_predictions(probs: ArrayView2<'_, f32>) -> Vec<usize> {
    probs
        .outer_iter()
        .map(|row| match row.as_slice() {
            Some(r) => argmax(r),
            None => argmax(&row.to_vec()),
        })
        .collect()
}

/// Slices grouped into songs by a key: song ids in sorted key order, each song's label the
/// label of its first slice (the paper takes the song's label from its first slice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SongGroups {
    /// One key per song, sorted (song id = position).
    pub keys: Vec<String>,
    /// The song id of every slice, in slice order (what [`song_vote`](crate::song_vote)
    /// takes).
    pub song_of_slice: Vec<usize>,
    /// The label of every song: that of its first slice.
    pub labels: Vec<usize>,
}

impl SongGroups {
    /// Groups slices with keys `slice_keys` and labels `slice_labels` (one each per slice;
    /// extra entries of the longer list are ignored).
    pub fn new(slice_keys: &[String], slice_labels: &[usize]) -> Self {
        let mut keys: Vec<String> = slice_keys.to_vec();
        keys.sort();
        keys.dedup();
        let song_of_slice: Vec<usize> = slice_keys
            .iter()
            .map(|k| keys.binary_search(k).unwrap_or(0))
            .collect();
        let mut labels = vec![usize::MAX; keys.len()];
        for (s, l) in song_of_slice.iter().zip(slice_labels) {
            if labels[*s] == usize::MAX {
                labels[*s] = *l;
            }
        }
        Self {
            keys,
            song_of_slice,
            labels,
        }
    }

    /// Number of songs.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no songs.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1f32, 0.7, 0.7, 0.2]), 1);
        assert_eq!(argmax::<f32>(&[]), 0);
        assert_eq!(argmax(&[3u32, 1, 3]), 0);
        let probs = ndarray::array![[0.2f32, 0.8], [0.6, 0.4], [0.5, 0.5]];
        assert_eq!(slice_predictions(probs.view()), vec![1, 0, 0]);
        // A non-contiguous view (a column-major array) gives the same.
        let t = probs.t().to_owned();
        assert_eq!(slice_predictions(t.t()), vec![1, 0, 0]);
    }

    #[test]
    fn songs_are_sorted_keys_labelled_by_their_first_slice() {
        let keys: Vec<String> = ["b", "a", "b", "c", "a"].map(String::from).into();
        let g = SongGroups::new(&keys, &[2, 0, 1, 3, 4]);
        assert_eq!(g.keys, vec!["a", "b", "c"]);
        assert_eq!(g.song_of_slice, vec![1, 0, 1, 2, 0]);
        // Song "b": slices 0 (label 2) and 2 (label 1): the first slice's label.
        assert_eq!(g.labels, vec![0, 2, 3]);
        assert_eq!(g.len(), 3);
    }
}
