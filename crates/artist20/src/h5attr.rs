//! HDF5 helpers of the feature store and the shard index: errors that carry the file, string
//! and integer attributes, nested groups.

use std::path::Path;

use hdf5::types::VarLenUnicode;

use crate::{Error, Result};

pub(crate) fn h5(path: &Path) -> impl Fn(hdf5::Error) -> Error + '_ {
    move |e| Error::Hdf5 {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub(crate) fn str_attr(loc: &hdf5::Location, name: &str, value: &str, path: &Path) -> Result<()> {
    let v: VarLenUnicode = value.parse().map_err(|e| Error::Store {
        path: path.to_path_buf(),
        reason: format!("attribute {name}: {e:?}"),
    })?;
    loc.new_attr::<VarLenUnicode>()
        .create(name)
        .map_err(h5(path))?
        .write_scalar(&v)
        .map_err(h5(path))
}

pub(crate) fn read_str_attr(loc: &hdf5::Location, name: &str, path: &Path) -> Result<String> {
    Ok(loc
        .attr(name)
        .map_err(h5(path))?
        .read_scalar::<VarLenUnicode>()
        .map_err(h5(path))?
        .as_str()
        .to_string())
}

pub(crate) fn u64_attr(loc: &hdf5::Location, name: &str, value: u64, path: &Path) -> Result<()> {
    loc.new_attr::<u64>()
        .create(name)
        .map_err(h5(path))?
        .write_scalar(&value)
        .map_err(h5(path))
}

pub(crate) fn read_u64_attr(loc: &hdf5::Location, name: &str, path: &Path) -> Result<u64> {
    loc.attr(name)
        .map_err(h5(path))?
        .read_scalar::<u64>()
        .map_err(h5(path))
}

/// The group at `parent` (`a/b/c`) under the root of `file`, created where missing.
pub(crate) fn ensure_groups(file: &hdf5::File, parent: &str, path: &Path) -> Result<hdf5::Group> {
    let mut group = file.group("/").map_err(h5(path))?;
    for part in parent.split('/') {
        group = if group.link_exists(part) {
            group.group(part)
        } else {
            group.create_group(part)
        }
        .map_err(h5(path))?;
    }
    Ok(group)
}
