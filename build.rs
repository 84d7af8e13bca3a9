//! Generates the KEDA External Scaler's gRPC code from `proto/externalscaler.proto` with a pure-Rust protobuf
//! compiler (protox), so a build needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/externalscaler.proto");
    let descriptors = protox::compile(["proto/externalscaler.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The tests connect with tonic's transport; the adapter itself only serves.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
