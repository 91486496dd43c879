//! What symphonia's MP4 reader does not tell: the edit list (the encoder delay and the padding
//! that AAC files carry, applied as ffmpeg and Apple's decoders apply it), a protected (DRM)
//! sample entry, a video-only file, and an index ('moov' box) that is missing because the file
//! was cut off. A small reader of the ISO box tree (ISO/IEC 14496-12), bounded in what it reads.

use std::io::{Read, Seek, SeekFrom};

/// Largest 'moov' box read into memory (real ones are kilobytes to a few MB).
const MAX_MOOV_BYTES: u64 = 64 << 20;
/// Deepest box nesting followed (moov/trak/mdia/minf/stbl/stsd/entry/sinf is 8).
const MAX_DEPTH: usize = 10;

/// One audio track's facts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AudioTrack {
    /// `tkhd` track id (symphonia's track id).
    pub id: u32,
    /// The sample entry's four-character code (`mp4a`, `alac`, `drms`, `enca`, ...).
    pub sample_entry: [u8; 4],
    /// The sample entry is encrypted (`drms`, `enca`, or a `sinf` box inside it).
    pub protected: bool,
    /// `mdhd` timescale (units of `media_time`).
    pub media_timescale: u32,
    /// The first non-empty edit: media time where presentation starts (media timescale) and
    /// its duration (movie timescale).
    pub edit: Option<(i64, u64)>,
}

/// What the box tree says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mp4Info {
    /// A 'moov' box was found whole.
    pub has_moov: bool,
    /// `mvhd` timescale (units of edit durations).
    pub movie_timescale: u32,
    /// Audio (`soun`) tracks.
    pub audio: Vec<AudioTrack>,
    /// Tracks of other kinds (video, text, ...).
    pub other_tracks: usize,
    /// A top-level box (typically 'mdat') declares more bytes than the file has: the file was
    /// cut off after its index.
    pub cut_short: bool,
}

/// Frames to drop at the start and to keep after them, at `rate` Hz, from an edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditTrim {
    /// Frames dropped from the start (encoder delay).
    pub skip: u64,
    /// Frames presented after them (the source length), `None` if unbounded.
    pub keep: Option<u64>,
}

impl Mp4Info {
    /// The trim of track `id` at `rate` Hz, if it has an edit list.
    pub fn trim(&self, id: u32, rate: u32) -> Option<EditTrim> {
        let t = self.audio.iter().find(|t| t.id == id)?;
        let (media_time, duration) = t.edit?;
        if media_time < 0 || t.media_timescale == 0 {
            return None;
        }
        let scale = |v: u64, from: u32| -> u64 {
            (u128::from(v) * u128::from(rate) / u128::from(from.max(1))) as u64
        };
        let skip = scale(media_time.unsigned_abs(), t.media_timescale);
        // A zero duration means "to the end of the media" (some muxers write it).
        let keep = (duration > 0 && self.movie_timescale > 0)
            .then(|| scale(duration, self.movie_timescale));
        Some(EditTrim { skip, keep })
    }
}

/// Reads the top-level boxes of `r`. `Ok(None)` if the bytes do not start like an MP4 (`ftyp`,
/// or `moov`/`mdat`/`free`/`wide` first); `Err` with the reason if the file starts as MP4 but
/// its tree is broken. Leaves the position anywhere: callers seek back.
pub fn inspect<R: Read + Seek>(r: &mut R) -> std::io::Result<Option<Mp4Info>> {
    let len = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(0))?;
    let mut info = Mp4Info::default();
    let mut pos = 0u64;
    let mut first = true;
    while pos + 8 <= len {
        r.seek(SeekFrom::Start(pos))?;
        let Some((kind, header, size)) = read_header(r, len - pos)? else {
            break;
        };
        if first {
            if !matches!(
                &kind,
                b"ftyp" | b"moov" | b"mdat" | b"free" | b"wide" | b"skip"
            ) {
                return Ok(None);
            }
            first = false;
        }
        let end = pos.saturating_add(size);
        if end > len {
            info.cut_short = true;
        }
        if &kind == b"moov" {
            if end > len {
                // The index itself is cut off: the same as no index.
                break;
            }
            let body = size - header;
            if body > MAX_MOOV_BYTES {
                return Err(bad(format!(
                    "'moov' box of {body} bytes (limit {MAX_MOOV_BYTES})"
                )));
            }
            let mut buf = vec![0u8; body as usize];
            r.read_exact(&mut buf)?;
            parse_moov(&buf, &mut info);
            info.has_moov = true;
        }
        if size == 0 || end >= len {
            break;
        }
        pos = end;
    }
    if first {
        return Ok(None);
    }
    Ok(Some(info))
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// A box header at the reader's position: (type, header length, box size). Size 0 ("to the end")
/// becomes `left`. `None` if the header does not fit.
fn read_header<R: Read>(r: &mut R, left: u64) -> std::io::Result<Option<([u8; 4], u64, u64)>> {
    let mut h = [0u8; 8];
    if r.read_exact(&mut h).is_err() {
        return Ok(None);
    }
    let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let kind = [h[4], h[5], h[6], h[7]];
    let (header, size) = match size32 {
        0 => (8, left),
        1 => {
            let mut l = [0u8; 8];
            if r.read_exact(&mut l).is_err() {
                return Ok(None);
            }
            (16, u64::from_be_bytes(l))
        }
        s => (8, u64::from(s)),
    };
    if size < header {
        return Err(bad(format!(
            "box '{}' of size {size} is smaller than its header",
            String::from_utf8_lossy(&kind)
        )));
    }
    Ok(Some((kind, header, size)))
}

/// The child boxes in `buf`: (type, body). Stops at the first box that does not fit.
fn children(buf: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let h = buf.get(pos..pos + 8)?;
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let kind = [h[4], h[5], h[6], h[7]];
        let (header, size) = match size32 {
            0 => (8, buf.len() - pos),
            1 => {
                let l = buf.get(pos + 8..pos + 16)?;
                let s = u64::from_be_bytes(l.try_into().ok()?);
                (16, usize::try_from(s).ok()?)
            }
            s => (8, s),
        };
        if size < header || pos.checked_add(size)? > buf.len() {
            return None;
        }
        let body = &buf[pos + header..pos + size];
        pos += size;
        Some((kind, body))
    })
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The u32 after a full box's version/flags and its creation and modification times: the
/// timescale of `mvhd` and `mdhd`, the track id of `tkhd` (offset 12 in version 0, where the
/// times are u32s; 20 in version 1, where they are u64s). 0 if the box is too short.
fn after_times_u32(body: &[u8]) -> u32 {
    let at = if body.first() == Some(&1) { 20 } else { 12 };
    be_u32(body, at).unwrap_or(0)
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn parse_moov(moov: &[u8], info: &mut Mp4Info) {
    for (kind, body) in children(moov) {
        match &kind {
            b"mvhd" => info.movie_timescale = after_times_u32(body),
            b"trak" => parse_trak(body, info),
            _ => {}
        }
    }
}

fn parse_trak(trak: &[u8], info: &mut Mp4Info) {
    let mut t = AudioTrack::default();
    let mut handler = [0u8; 4];
    for (kind, body) in children(trak) {
        match &kind {
            b"tkhd" => t.id = after_times_u32(body),
            b"edts" => {
                for (k, elst) in children(body) {
                    if &k == b"elst" {
                        t.edit = first_edit(elst);
                    }
                }
            }
            b"mdia" => {
                for (k, b) in children(body) {
                    match &k {
                        b"mdhd" => t.media_timescale = after_times_u32(b),
                        // hdlr: version/flags(4), pre_defined(4), handler_type(4).
                        b"hdlr" => {
                            if let Some(h) = b.get(8..12) {
                                handler.copy_from_slice(h);
                            }
                        }
                        b"minf" => parse_minf(b, &mut t, 0),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if &handler == b"soun" {
        info.audio.push(t);
    } else {
        info.other_tracks += 1;
    }
}

/// Finds stbl/stsd under minf and reads the first sample entry.
fn parse_minf(buf: &[u8], t: &mut AudioTrack, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for (kind, body) in children(buf) {
        match &kind {
            b"stbl" => parse_minf(body, t, depth + 1),
            // stsd: version/flags(4), entry_count(4), then sample entries (boxes).
            b"stsd" => {
                if let Some((entry, entry_body)) = body.get(8..).and_then(|b| children(b).next()) {
                    t.sample_entry = entry;
                    t.protected = matches!(&entry, b"drms" | b"enca" | b"drmi" | b"encv")
                        || has_sinf(entry_body);
                }
            }
            _ => {}
        }
    }
}

/// An audio sample entry has 28 bytes of fields (ISO 14496-12 AudioSampleEntry, version 0)
/// before its child boxes; a protection scheme box `sinf` among them marks encryption.
fn has_sinf(entry_body: &[u8]) -> bool {
    entry_body
        .get(28..)
        .is_some_and(|b| children(b).any(|(k, _)| &k == b"sinf"))
}

/// The first edit with a media time >= 0 (empty edits, media time -1, only delay the
/// presentation and are skipped): (media time, segment duration).
fn first_edit(elst: &[u8]) -> Option<(i64, u64)> {
    let v1 = *elst.first()? == 1;
    let count = be_u32(elst, 4)? as usize;
    let entry = if v1 { 20 } else { 12 };
    (0..count.min(1024)).find_map(|i| {
        let at = 8 + i * entry;
        let (duration, media_time) = if v1 {
            (be_u64(elst, at)?, be_u64(elst, at + 8)? as i64)
        } else {
            (
                u64::from(be_u32(elst, at)?),
                i64::from(be_u32(elst, at + 4)? as i32),
            )
        };
        (media_time >= 0).then_some((media_time, duration))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn audio_entry(kind: &[u8; 4], extra: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8; 28];
        body.extend_from_slice(extra);
        bx(kind, &body)
    }

    fn track(id: u32, handler: &[u8; 4], entry: Vec<u8>, edit: Option<(u32, i32)>) -> Vec<u8> {
        let mut tkhd = vec![0u8; 12];
        tkhd.extend_from_slice(&id.to_be_bytes());
        tkhd.extend_from_slice(&[0u8; 8]);
        let mut mdhd = vec![0u8; 12];
        mdhd.extend_from_slice(&44_100u32.to_be_bytes());
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(handler);
        let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd.extend_from_slice(&entry);
        let stbl = bx(b"stbl", &bx(b"stsd", &stsd));
        let minf = bx(b"minf", &stbl);
        let mdia = bx(
            b"mdia",
            &[bx(b"mdhd", &mdhd), bx(b"hdlr", &hdlr), minf].concat(),
        );
        let mut parts = vec![bx(b"tkhd", &tkhd)];
        if let Some((dur, media)) = edit {
            let mut elst = vec![0, 0, 0, 0, 0, 0, 0, 2];
            // An empty edit first, then the real one.
            elst.extend_from_slice(&100u32.to_be_bytes());
            elst.extend_from_slice(&(-1i32).to_be_bytes());
            elst.extend_from_slice(&[0, 1, 0, 0]);
            elst.extend_from_slice(&dur.to_be_bytes());
            elst.extend_from_slice(&media.to_be_bytes());
            elst.extend_from_slice(&[0, 1, 0, 0]);
            parts.push(bx(b"edts", &bx(b"elst", &elst)));
        }
        parts.push(mdia);
        bx(b"trak", &parts.concat())
    }

    fn file(traks: &[Vec<u8>], moov_first: bool) -> Vec<u8> {
        let mut mvhd = vec![0u8; 12];
        mvhd.extend_from_slice(&1000u32.to_be_bytes());
        let moov = bx(
            b"moov",
            &[vec![bx(b"mvhd", &mvhd)], traks.to_vec()].concat().concat(),
        );
        let ftyp = bx(b"ftyp", b"M4A \0\0\0\0");
        let mdat = bx(b"mdat", &[7u8; 100]);
        if moov_first {
            [ftyp, moov, mdat].concat()
        } else {
            [ftyp, mdat, moov].concat()
        }
    }

    fn run(bytes: &[u8]) -> Option<Mp4Info> {
        inspect(&mut std::io::Cursor::new(bytes)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn reads_edit_list_and_sample_entry() {
        let f = file(
            &[track(
                1,
                b"soun",
                audio_entry(b"mp4a", &[]),
                Some((500, 2112)),
            )],
            false,
        );
        let info = run(&f).unwrap_or_default();
        assert!(info.has_moov);
        assert_eq!(info.audio.len(), 1);
        assert_eq!(&info.audio[0].sample_entry, b"mp4a");
        assert!(!info.audio[0].protected);
        // 2112 frames of delay at 44.1 kHz; 500 ms kept.
        assert_eq!(
            info.trim(1, 44_100),
            Some(EditTrim {
                skip: 2112,
                keep: Some(22_050)
            })
        );
        assert_eq!(
            info.trim(1, 22_050),
            Some(EditTrim {
                skip: 1056,
                keep: Some(11_025)
            })
        );
        assert_eq!(info.trim(2, 44_100), None);
    }

    #[test]
    fn finds_protection_video_only_and_missing_index() {
        let drm = file(&[track(1, b"soun", audio_entry(b"drms", &[]), None)], true);
        assert!(run(&drm).unwrap_or_default().audio[0].protected);
        let sinf = audio_entry(b"mp4a", &bx(b"sinf", &bx(b"frma", b"mp4a")));
        let cenc = file(&[track(1, b"soun", sinf, None)], true);
        assert!(run(&cenc).unwrap_or_default().audio[0].protected);
        let video = file(&[track(1, b"vide", bx(b"avc1", &[0u8; 78]), None)], true);
        let v = run(&video).unwrap_or_default();
        assert_eq!((v.audio.len(), v.other_tracks), (0, 1));
        // Cut before the trailing moov: no index.
        let f = file(&[track(1, b"soun", audio_entry(b"mp4a", &[]), None)], false);
        let cut = &f[..f.len() - 20];
        assert!(!run(cut).unwrap_or_default().has_moov);
        // Cut inside the trailing mdat of a moov-first file: index whole, data short.
        let g = file(&[track(1, b"soun", audio_entry(b"mp4a", &[]), None)], true);
        let info = run(&g[..g.len() - 10]).unwrap_or_default();
        assert!(info.has_moov && info.cut_short);
        assert!(!run(&g).unwrap_or_default().cut_short);
    }

    #[test]
    fn other_bytes_are_not_mp4_and_broken_trees_do_not_panic() {
        assert_eq!(run(b"ID3\x04\0\0\0\0\0\0hello"), None);
        assert_eq!(run(b"RIFF....WAVEfmt "), None);
        assert_eq!(run(b""), None);
        let f = file(
            &[track(1, b"soun", audio_entry(b"mp4a", &[]), Some((1, 2)))],
            true,
        );
        for cut in 0..f.len() {
            let _ = inspect(&mut std::io::Cursor::new(&f[..cut]));
        }
        let mut g = f.clone();
        for i in 0..g.len() {
            g[i] ^= 0x5a;
            let _ = inspect(&mut std::io::Cursor::new(&g));
            g[i] ^= 0x5a;
        }
    }
}
