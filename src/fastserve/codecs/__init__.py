"""Codecs between wire formats and numpy: TensorProto, REST JSON, tf.Example, proto messages."""
