//! With the `tch` feature, links libtorch with an rpath (see the libtorch-rpath crate).
fn main() {
    libtorch_rpath::emit_if_feature("tch");
}
