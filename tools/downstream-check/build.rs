fn main() {
    libtorch_rpath::emit();
}
