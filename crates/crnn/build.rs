//! Links libtorch with an rpath (see the libtorch-rpath crate).
fn main() {
    libtorch_rpath::emit();
}
