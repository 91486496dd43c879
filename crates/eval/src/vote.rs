//! Song-level predictions from slice-level probabilities.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, argmax};

/// How the slices of a song elect the song's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteRule {
    /// The paper (`predict_artist`): keep the slices whose max probability is strictly above
    /// 0.5 (all of them when none is), take the majority of their argmax classes, ties to the
    /// smallest class index (`scipy.stats.mode`).
    #[default]
    Paper,
    /// Argmax of the mean probability vector over all slices (ties to the smallest index):
    /// uses every slice's full distribution instead of a thresholded hard vote.
    MeanProbability,
}

/// One song's vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SongVote {
    /// The elected class.
    pub predicted: usize,
    /// Slices of the song.
    pub n_slices: usize,
    /// Slices that took part (for [`VoteRule::Paper`]: those above 0.5, or all).
    pub n_voting: usize,
    /// Per class, the number of voting slices whose argmax it is.
    pub counts: Vec<u32>,
    /// Per class, the mean probability over all the song's slices.
    pub mean_probability: Vec<f64>,
}

/// One class per song: `result[s]` for song id `s`. Song ids are the caller's (this project
/// passes a unique track index; the paper grouped by bare file name) and must be `0..n_songs`
/// with at least one slice each.
pub fn song_vote(
    probs: ArrayView2<'_, f32>,
    song_of_slice: &[usize],
    rule: VoteRule,
) -> Result<Vec<usize>> {
    Ok(song_votes(probs, song_of_slice, rule)?
        .into_iter()
        .map(|v| v.predicted)
        .collect())
}

/// As [`song_vote`], with each song's vote counts and mean probabilities (for reports and
/// `predict`).
pub fn song_votes(
    probs: ArrayView2<'_, f32>,
    song_of_slice: &[usize],
    rule: VoteRule,
) -> Result<Vec<SongVote>> {
    let (n_slices, n_classes) = probs.dim();
    if n_slices != song_of_slice.len() {
        return Err(Error::LengthMismatch {
            what: "probs rows and song_of_slice",
            left: n_slices,
            right: song_of_slice.len(),
        });
    }
    if n_slices == 0 {
        return Err(Error::Empty("probs"));
    }
    if n_classes == 0 {
        return Err(Error::Empty("probs columns (classes)"));
    }
    let n_songs = song_of_slice.iter().max().map_or(0, |m| m + 1);
    let mut votes: Vec<SongVote> = (0..n_songs)
        .map(|_| SongVote {
            predicted: 0,
            n_slices: 0,
            n_voting: 0,
            counts: vec![0; n_classes],
            mean_probability: vec![0.0; n_classes],
        })
        .collect();
    // Per slice: argmax (first maximum, as numpy) and max; per song: sums and confident counts.
    let mut confident = vec![vec![0u32; n_classes]; n_songs];
    let mut all = vec![vec![0u32; n_classes]; n_songs];
    for (i, (row, &song)) in probs.outer_iter().zip(song_of_slice).enumerate() {
        let mut best = 0;
        for (c, &p) in row.iter().enumerate() {
            if !p.is_finite() {
                return Err(Error::NonFiniteProbability { slice: i, class: c });
            }
            if p > row[best] {
                best = c;
            }
        }
        let v = &mut votes[song];
        v.n_slices += 1;
        for (m, &p) in v.mean_probability.iter_mut().zip(row.iter()) {
            *m += f64::from(p);
        }
        all[song][best] += 1;
        if row[best] > 0.5 {
            confident[song][best] += 1;
        }
    }
    for (s, v) in votes.iter_mut().enumerate() {
        if v.n_slices == 0 {
            return Err(Error::SongWithoutSlices { song: s });
        }
        for m in &mut v.mean_probability {
            *m /= v.n_slices as f64;
        }
        match rule {
            VoteRule::Paper => {
                let n_conf: u32 = confident[s].iter().sum();
                v.counts = if n_conf > 0 {
                    confident[s].clone()
                } else {
                    all[s].clone()
                };
                v.n_voting = v.counts.iter().sum::<u32>() as usize;
                v.predicted = argmax(&v.counts);
            }
            VoteRule::MeanProbability => {
                v.counts = all[s].clone();
                v.n_voting = v.n_slices;
                v.predicted = argmax(&v.mean_probability);
            }
        }
    }
    Ok(votes)
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn paper_rule_filters_confident_slices() {
        // Song 0: two unsure slices say class 0, one confident slice says class 2 -> 2.
        let p = array![[0.4f32, 0.3, 0.3], [0.45, 0.1, 0.45], [0.1, 0.1, 0.8]];
        assert_eq!(
            song_vote(p.view(), &[0, 0, 0], VoteRule::Paper).unwrap(),
            vec![2]
        );
        // Mean probability: class 2 has mean 0.517 -> also 2; class 0 mean 0.317.
        assert_eq!(
            song_vote(p.view(), &[0, 0, 0], VoteRule::MeanProbability).unwrap(),
            vec![2]
        );
    }

    #[test]
    fn all_below_threshold_falls_back_to_every_slice() {
        let p = array![[0.4f32, 0.35, 0.25], [0.2, 0.45, 0.35], [0.5, 0.3, 0.2]];
        // No slice is > 0.5 (0.5 itself is not), so all three vote: 0, 1, 0 -> 0.
        let v = song_votes(p.view(), &[0, 0, 0], VoteRule::Paper).unwrap();
        assert_eq!(v[0].predicted, 0);
        assert_eq!(v[0].n_voting, 3);
        assert_eq!(v[0].counts, vec![2, 1, 0]);
    }

    #[test]
    fn ties_go_to_the_smallest_class() {
        let p = array![
            [0.1f32, 0.1, 0.8],
            [0.9, 0.05, 0.05],
            [0.1, 0.1, 0.8],
            [0.9, 0.05, 0.05]
        ];
        assert_eq!(
            song_vote(p.view(), &[0, 0, 0, 0], VoteRule::Paper).unwrap(),
            vec![0]
        );
        // Equal mean probabilities tie to the smallest index too.
        let q = array![[0.5f32, 0.5]];
        assert_eq!(
            song_vote(q.view(), &[0], VoteRule::MeanProbability).unwrap(),
            vec![0]
        );
    }

    #[test]
    fn several_songs_and_errors() {
        let p = array![[0.9f32, 0.1], [0.2, 0.8], [0.7, 0.3]];
        assert_eq!(
            song_vote(p.view(), &[1, 0, 1], VoteRule::Paper).unwrap(),
            vec![1, 0]
        );
        assert!(matches!(
            song_vote(p.view(), &[0, 2, 0], VoteRule::Paper),
            Err(Error::SongWithoutSlices { song: 1 })
        ));
        assert!(matches!(
            song_vote(p.view(), &[0, 0], VoteRule::Paper),
            Err(Error::LengthMismatch { .. })
        ));
        let nan = array![[f32::NAN, 0.5]];
        assert!(matches!(
            song_vote(nan.view(), &[0], VoteRule::Paper),
            Err(Error::NonFiniteProbability { .. })
        ));
    }
}
