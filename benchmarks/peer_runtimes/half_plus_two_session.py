"""The half_plus_two SavedModel called the way fastserve calls it: a TF1 session over the
loaded meta graph and one callable made from CallableOptions (feeds x as it comes, [n], with
no client-side check against the signature's (-1, 1)). The peers' runtimes import this from
their own virtualenvs, so each peer pays the same model cost as fastserve does."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


class HalfPlusTwo:
    """y = 0.5 * x + 2 through the SavedModel's serving_default signature (x -> y)."""

    def __init__(self, path: str) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import config_pb2
        from tensorflow.python.saved_model.loader_impl import SavedModelLoader

        v1 = tf.compat.v1
        self._graph = tf.Graph()
        # Inline execution on the calling thread, as fastserve's loader does for "auto".
        config = v1.ConfigProto(inter_op_parallelism_threads=-1, allow_soft_placement=True)
        self._session = v1.Session(graph=self._graph, config=config)
        with self._graph.as_default():
            meta_graph = SavedModelLoader(path).load(self._session, ["serve"])
        signature = meta_graph.signature_def["serving_default"]
        options = config_pb2.CallableOptions(
            feed=[signature.inputs["x"].name], fetch=[signature.outputs["y"].name]
        )
        self._call = self._session._make_callable_from_options(options)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._call(np.asarray(x, dtype=np.float32))[0])
