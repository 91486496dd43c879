//! The formats this build of audio-io decodes, from the one list (`audio_io::formats`).
//!
//! `cargo run -p audio-io --example formats` prints the Markdown table;
//! `-- --extensions` prints the file extensions, one per line (the fuzz target's order);
//! `-- --write` rewrites the generated table in audio-io's README and the workspace README.

use std::path::PathBuf;

fn main() -> Result<(), String> {
    let arg = std::env::args().nth(1).unwrap_or_default();
    match arg.as_str() {
        "" => print!("{}", audio_io::formats::markdown_table()),
        "--extensions" => {
            for ext in audio_io::formats::extensions() {
                println!("{ext}");
            }
        }
        "--write" => {
            let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            for readme in [
                crate_dir.join("README.md"),
                crate_dir.join("../../README.md"),
            ] {
                let text = std::fs::read_to_string(&readme)
                    .map_err(|e| format!("{}: {e}", readme.display()))?;
                let new = audio_io::formats::with_table(&text).ok_or_else(|| {
                    format!(
                        "{}: no '{}' ... '{}' markers",
                        readme.display(),
                        audio_io::formats::TABLE_BEGIN,
                        audio_io::formats::TABLE_END
                    )
                })?;
                if new != text {
                    let tmp = readme.with_extension("md.tmp");
                    std::fs::write(&tmp, &new).map_err(|e| format!("{}: {e}", tmp.display()))?;
                    std::fs::rename(&tmp, &readme)
                        .map_err(|e| format!("{}: {e}", readme.display()))?;
                    eprintln!("updated {}", readme.display());
                }
            }
        }
        other => {
            return Err(format!(
                "unknown argument {other:?}; use --extensions or --write"
            ));
        }
    }
    Ok(())
}
