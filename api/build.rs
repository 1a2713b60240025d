//! With the `eventstore-grpc` feature: compiles the EventStoreDB client protocol's .proto files
//! (protos/eventstore/, as published with the `eventstore` 4.0.0 client) into the server side of
//! its `Streams` service. Without it: nothing.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "eventstore-grpc")]
    {
        let descriptors =
            protox::compile(["protos/eventstore/streams.proto"], ["protos/eventstore"])?;
        tonic_prost_build::configure()
            .build_client(false)
            .compile_fds(descriptors)?;
        println!("cargo:rerun-if-changed=protos/eventstore");
    }
    Ok(())
}
