"""HTTP layer of the encoder: routes translate between HTTP and `EncoderEngine`, nothing more."""
