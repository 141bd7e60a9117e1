//! Compiles the gRPC API with a vendored `protoc`, so a fresh machine needs nothing but cargo.

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // The build script is single-threaded; prost-build reads PROTOC from the environment.
    env::set_var("PROTOC", protoc);
    let out = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("volley_descriptor.bin"))
        // prost's encoding, decoded from one contiguous slice (src/grpc_codec.rs).
        .codec_path("crate::grpc_codec::SliceCodec")
        .compile_protos(&["volley/v1/dispatcher.proto"], &["."])?;
    println!("cargo:rerun-if-changed=volley/v1/dispatcher.proto");
    Ok(())
}
