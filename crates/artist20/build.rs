//! A workspace build can turn on melspec's optional `tch` feature (cargo unifies features),
//! which links libtorch into this crate's tests too: give them the rpath (libtorch-rpath).
fn main() {
    libtorch_rpath::emit();
}
