// `sqlx::migrate!` embeds the migrations at compile time, but on stable Rust
// cargo does not know it read them: without this, adding or changing a
// migration leaves the binaries built with the old set.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
