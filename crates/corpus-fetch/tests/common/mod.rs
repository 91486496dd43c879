//! `.deb` packages made in the test: an `ar` archive with `debian-binary`, a control tar and
//! a data tar (xz, gzip or plain) holding the given files, and zip containers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// How the data tar is compressed.
#[derive(Clone, Copy, Debug)]
pub enum Compression {
    Xz,
    Gzip,
    Plain,
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("./{path}"), bytes.as_slice())
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// Writes a `.deb` at `path` whose data tar holds `files` (`usr/share/...`, bytes).
pub fn make_deb(path: &Path, files: &[(&str, Vec<u8>)], compression: Compression) {
    let tar = tar_of(files);
    let (name, data) = match compression {
        Compression::Xz => {
            let mut w =
                lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1))
                    .unwrap();
            w.write_all(&tar).unwrap();
            ("data.tar.xz", w.finish().unwrap())
        }
        Compression::Gzip => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(&tar).unwrap();
            ("data.tar.gz", w.finish().unwrap())
        }
        Compression::Plain => ("data.tar", tar),
    };
    let control = tar_of(&[("control", b"Package: test\n".to_vec())]);
    let mut ar = ar::Builder::new(std::fs::File::create(path).unwrap());
    for (id, bytes) in [
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar", control),
        (name, data),
    ] {
        let header = ar::Header::new(id.as_bytes().to_vec(), bytes.len() as u64);
        ar.append(&header, bytes.as_slice()).unwrap();
    }
}

/// A zip container (a `.pk3`) holding `files`.
pub fn make_zip(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        w.start_file(*name, options).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A manifest line: `artist/album/file` from `package` `1.0`'s `member`.
pub fn manifest_line(path: &str, package: &str, member: &str, bytes: &[u8]) -> String {
    let mut parts = path.split('/');
    let (artist, album) = (parts.next().unwrap(), parts.next().unwrap());
    format!(
        "{artist}\t{album}\t{path}\t1.0\t{package}\t1.0\t{member}\tGPL-2\ttest\tvorbis\tsmall\t{}\n",
        sha256(bytes)
    )
}

pub const HEADER: &str = "artist\talbum\tpath\tduration_s\tsource_package\tpackage_version\tmember_in_package\tlicence\tattribution_evidence\tcodec\ttier\tsha256\n";

/// A package cache with two packages (one xz with a plain member and a zip container, one
/// gzip) and the manifest of their five corpus files.
pub fn synthetic_corpus(cache: &Path) -> String {
    std::fs::create_dir_all(cache).unwrap();
    let song = |i: u8| -> Vec<u8> { (0..20_000u32).map(|k| (k as u8) ^ i).collect() };
    let pk3 = make_zip(&[("music/a.ogg", song(1)), ("music/b.ogg", song(2))]);
    make_deb(
        &cache.join("alpha-data_1.0_all.deb"),
        &[
            ("usr/share/alpha/one.ogg", song(0)),
            ("usr/share/alpha/music.pk3", pk3),
            ("usr/share/alpha/readme.txt", b"not listed".to_vec()),
        ],
        Compression::Xz,
    );
    make_deb(
        &cache.join("beta-music_1.0_all.deb"),
        &[
            ("usr/share/beta/x.ogg", song(3)),
            ("usr/share/beta/y.ogg", song(4)),
        ],
        Compression::Gzip,
    );
    let mut text = HEADER.to_string();
    text += &manifest_line(
        "ann/first/one.ogg",
        "alpha-data",
        "usr/share/alpha/one.ogg",
        &song(0),
    );
    text += &manifest_line(
        "ann/second/a.ogg",
        "alpha-data",
        "usr/share/alpha/music.pk3!music/a.ogg",
        &song(1),
    );
    text += &manifest_line(
        "ann/second/b.ogg",
        "alpha-data",
        "usr/share/alpha/music.pk3!music/b.ogg",
        &song(2),
    );
    text += &manifest_line(
        "bob/live/x.ogg",
        "beta-music",
        "usr/share/beta/x.ogg",
        &song(3),
    );
    text += &manifest_line(
        "bob/live/y.ogg",
        "beta-music",
        "usr/share/beta/y.ogg",
        &song(4),
    );
    text
}
