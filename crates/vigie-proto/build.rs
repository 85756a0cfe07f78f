// Compile proto/vigie.proto without a system `protoc`: protox parses it in
// pure Rust and hands tonic-prost-build a file descriptor set.
fn main() {
    println!("cargo:rerun-if-changed=proto/vigie.proto");
    let fds =
        protox::compile(["proto/vigie.proto"], ["proto"]).expect("proto/vigie.proto compiles");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .expect("generate Rust code from vigie.proto");
}
