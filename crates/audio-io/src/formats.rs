//! The one list of what audio-io decodes. Error messages, the file extensions that corpus
//! scanners look for, the fuzz target's extension hints and the format tables in the READMEs
//! are all made from [`FORMATS`]; a test checks the READMEs against [`markdown_table`], and one
//! checks the list against the symphonia features the workspace enables.

/// One container/codec family that [`crate::load`] decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Short name, as in error messages ("MP3", "Ogg Opus").
    pub name: &'static str,
    /// The container.
    pub container: &'static str,
    /// The codecs read inside that container.
    pub codecs: &'static str,
    /// File extensions (lower case, no dot) that usually hold this format.
    pub extensions: &'static [&'static str],
    /// The decoder behind it.
    pub decoder: &'static str,
    /// Whether this build decodes it (some formats need a cargo feature).
    pub enabled: bool,
}

/// Every format, enabled in this build or not. The order is the order of messages and tables.
pub const FORMATS: &[Format] = &[
    Format {
        name: "MP3",
        container: "MPEG audio (ID3v1/v2, APE tags skipped)",
        codecs: "MPEG-1/2 Layer III",
        extensions: &["mp3"],
        decoder: "symphonia `mp3`",
        enabled: true,
    },
    Format {
        name: "Ogg Vorbis",
        container: "Ogg",
        codecs: "Vorbis",
        extensions: &["ogg", "oga"],
        decoder: "symphonia `vorbis`",
        enabled: true,
    },
    Format {
        name: "Ogg Opus",
        container: "Ogg",
        codecs: "Opus (RFC 7845 pre-skip, end trim, output gain; 1-8 channels, mapping families 0 and 1)",
        extensions: &["opus", "ogg", "oga"],
        decoder: "libopus 1.6 (reference decoder, `opus` crate) as a symphonia codec",
        enabled: cfg!(feature = "opus"),
    },
    Format {
        name: "FLAC",
        container: "FLAC, Ogg",
        codecs: "FLAC",
        extensions: &["flac", "ogg"],
        decoder: "symphonia `flac`",
        enabled: true,
    },
    Format {
        name: "WAV",
        container: "RIFF WAVE",
        codecs: "PCM 8/16/24/32-bit, float, A-law, mu-law, IMA and MS ADPCM",
        extensions: &["wav"],
        decoder: "symphonia `pcm`, `adpcm`",
        enabled: true,
    },
    Format {
        name: "MP4/M4A",
        container: "ISO MP4 (edit list applied)",
        codecs: "AAC-LC, ALAC",
        extensions: &["m4a", "mp4", "m4b"],
        decoder: "symphonia `isomp4`, `aac`, `alac`",
        enabled: true,
    },
    Format {
        name: "ADTS AAC",
        container: "ADTS",
        codecs: "AAC-LC",
        extensions: &["aac"],
        decoder: "symphonia `aac`",
        enabled: true,
    },
    Format {
        name: "Matroska/WebM",
        container: "Matroska, WebM",
        codecs: "Vorbis, FLAC, PCM, AAC, Opus (with the `opus` feature)",
        extensions: &["mka", "mkv", "webm"],
        decoder: "symphonia `mkv`",
        enabled: true,
    },
];

/// The formats this build decodes.
pub fn enabled() -> impl Iterator<Item = &'static Format> {
    FORMATS.iter().filter(|f| f.enabled)
}

/// Every extension of an enabled format, lower case, each once, in table order.
pub fn extensions() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for ext in enabled().flat_map(|f| f.extensions.iter().copied()) {
        if !out.contains(&ext) {
            out.push(ext);
        }
    }
    out
}

/// Whether `path` has the extension of an enabled format (case-insensitive).
pub fn has_audio_extension(path: &std::path::Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        enabled()
            .flat_map(|f| f.extensions.iter())
            .any(|x| x.eq_ignore_ascii_case(e))
    })
}

/// "MP3, Ogg Vorbis, Ogg Opus, ..." : the enabled formats, for messages.
pub fn summary() -> String {
    enabled().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

/// The README table of the enabled formats (Markdown), between the markers
/// `<!-- formats:begin -->` and `<!-- formats:end -->` in audio-io's and the workspace's README.
/// `cargo run -p audio-io --example formats -- --write` rewrites them.
pub fn markdown_table() -> String {
    let mut s = String::from(
        "| format | container | codecs | extensions | decoder |\n|---|---|---|---|---|\n",
    );
    for f in FORMATS {
        let exts = f
            .extensions
            .iter()
            .map(|e| format!("`.{e}`"))
            .collect::<Vec<_>>()
            .join(" ");
        let name = if f.enabled {
            f.name.to_string()
        } else {
            format!("{} (not in this build)", f.name)
        };
        s.push_str(&format!(
            "| {name} | {} | {} | {exts} | {} |\n",
            f.container, f.codecs, f.decoder
        ));
    }
    s
}

/// The marker lines around the generated table in a README.
pub const TABLE_BEGIN: &str =
    "<!-- formats:begin (generated by `cargo run -p audio-io --example formats -- --write`) -->";
/// See [`TABLE_BEGIN`].
pub const TABLE_END: &str = "<!-- formats:end -->";

/// `text` with the part between [`TABLE_BEGIN`] and [`TABLE_END`] replaced by
/// [`markdown_table`]; `None` if the markers are missing or out of order.
pub fn with_table(text: &str) -> Option<String> {
    let start = text.find(TABLE_BEGIN)? + TABLE_BEGIN.len();
    let end = start + text[start..].find(TABLE_END)?;
    Some(format!(
        "{}\n{}{}",
        &text[..start],
        markdown_table(),
        &text[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_unique_lower_case_and_include_the_common_ones() {
        let e = extensions();
        for ext in &e {
            assert_eq!(*ext, ext.to_ascii_lowercase());
        }
        let mut sorted = e.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), e.len());
        for must in ["mp3", "ogg", "flac", "wav", "m4a", "aac"] {
            assert!(e.contains(&must), "{must}");
        }
        assert_eq!(e.contains(&"opus"), cfg!(feature = "opus"));
        assert!(has_audio_extension(std::path::Path::new("a/B.M4A")));
        assert!(!has_audio_extension(std::path::Path::new("a/b.txt")));
    }

    #[test]
    fn with_table_replaces_only_between_the_markers() {
        let text = format!("head\n{TABLE_BEGIN}\nold\n{TABLE_END}\ntail\n");
        let new = with_table(&text).unwrap_or_default();
        assert!(new.starts_with("head\n"));
        assert!(new.ends_with(&format!("{TABLE_END}\ntail\n")));
        assert!(new.contains(&markdown_table()));
        assert!(!new.contains("old"));
        assert_eq!(with_table(&new), Some(new.clone()), "idempotent");
        assert_eq!(with_table("no markers"), None);
    }
}
