"""Codecs between wire formats and numpy: TensorProto, REST JSON, tf.Example, TFRecord, and TF
Serving's proto messages (tfs_protos, from protos/)."""
