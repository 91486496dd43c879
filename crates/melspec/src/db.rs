//! Power to decibels, as `librosa.power_to_db`.

use ndarray::ArrayViewMut2;

use crate::kernels::{db_value, to_db};

/// The `10 log10(max(amin, ref_power))` term subtracted from every value.
pub(crate) fn db_offset(ref_power: f64, amin: f64) -> f32 {
    (10.0 * amin.max(ref_power.abs()).log10()) as f32
}

/// In place: `S -> 10 log10(max(amin, S)) - 10 log10(max(amin, ref_power))`, then, with
/// `top_db`, a floor at `max - top_db` where the max is over the **whole array** given (pass a
/// whole song to reproduce the paper's per-song floor). f32 results, as librosa on f32 input;
/// the same arithmetic as [`MelSpectrogram::db`](crate::MelSpectrogram::db).
pub fn power_to_db(mut s: ArrayViewMut2<'_, f32>, ref_power: f64, amin: f64, top_db: Option<f64>) {
    let (amin, offset) = (amin as f32, db_offset(ref_power, amin));
    let max = match s.as_slice_memory_order_mut() {
        Some(values) => to_db(values, amin, offset),
        None => {
            let mut max = f32::NEG_INFINITY;
            s.map_inplace(|x| {
                *x = db_value(*x, amin, offset);
                max = max.max(*x);
            });
            max
        }
    };
    if let Some(top) = top_db {
        let floor = max - top as f32;
        s.map_inplace(|x| *x = x.max(floor));
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn absolute_db_with_floor() {
        let mut s = array![[1.0f32, 100.0], [0.0, 1e-12]];
        power_to_db(s.view_mut(), 1.0, 1e-10, Some(80.0));
        assert_eq!(s, array![[0.0f32, 20.0], [-60.0, -60.0]]);
        let mut s = array![[1.0f32, 100.0], [0.0, 1e-12]];
        power_to_db(s.view_mut(), 10.0, 1e-10, None);
        assert_eq!(s, array![[-10.0f32, 10.0], [-110.0, -110.0]]);
    }

    #[test]
    fn silence_is_minus_100_db() {
        let mut s = ndarray::Array2::<f32>::zeros((3, 4));
        power_to_db(s.view_mut(), 1.0, 1e-10, Some(80.0));
        assert!(s.iter().all(|&x| x == -100.0));
    }
}
