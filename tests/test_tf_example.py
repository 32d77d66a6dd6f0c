"""codecs/tf_example.py: the serialized tf.Examples of Classify and Regress, from the Input
proto and from REST JSON."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import input_pb2

from fastserve.codecs.tf_example import example_from_json, examples_from_json, serialize_input
from fastserve.errors import Code, ServingError


def parse(serialized: bytes) -> example_pb2.Example:
    return example_pb2.Example.FromString(serialized)


def features(text: str) -> example_pb2.Example:
    return text_format.Parse(text, example_pb2.Example())


def test_an_example_list_serializes_each_example() -> None:
    proto = input_pb2.Input()
    proto.example_list.examples.extend(
        [
            features('features { feature { key: "x" value { float_list { value: 1 } } } }'),
            features('features { feature { key: "x" value { float_list { value: 2 } } } }'),
        ]
    )
    serialized = serialize_input(proto)
    assert [parse(item) for item in serialized] == list(proto.example_list.examples)


def test_with_a_context_each_example_merges_it_and_wins_over_it() -> None:
    proto = input_pb2.Input()
    listed = proto.example_list_with_context
    listed.context.CopyFrom(
        features(
            'features { feature { key: "lang" value { bytes_list { value: "en" } } } '
            'feature { key: "x" value { float_list { value: 0 } } } }'
        )
    )
    listed.examples.append(
        features('features { feature { key: "x" value { float_list { value: 5 } } } }')
    )
    listed.examples.append(example_pb2.Example())
    first, second = (parse(item).features.feature for item in serialize_input(proto))
    assert first["lang"].bytes_list.value == [b"en"]
    assert list(first["x"].float_list.value) == [5.0]
    assert list(second["x"].float_list.value) == [0.0]


def test_an_empty_input_is_no_examples() -> None:
    assert serialize_input(input_pb2.Input()) == []


def test_example_from_json_kinds() -> None:
    example = example_from_json(
        {
            "word": "héllo",
            "words": ["a", "b"],
            "raw": {"b64": "AAE="},
            "float": 1.5,
            "floats": [1.0, 2.5],
            "int": 7,
            "ints": [1, -2],
            "flag": True,
            "flags": [False, True],
        }
    )
    # fastserve's Example class, TensorFlow's in the test: compared on the wire.
    assert parse(example.SerializeToString()) == features(
        """
        features {
          feature { key: "word" value { bytes_list { value: "h\\303\\251llo" } } }
          feature { key: "words" value { bytes_list { value: ["a", "b"] } } }
          feature { key: "raw" value { bytes_list { value: "\\000\\001" } } }
          feature { key: "float" value { float_list { value: 1.5 } } }
          feature { key: "floats" value { float_list { value: [1.0, 2.5] } } }
          feature { key: "int" value { int64_list { value: 7 } } }
          feature { key: "ints" value { int64_list { value: [1, -2] } } }
          feature { key: "flag" value { int64_list { value: 1 } } }
          feature { key: "flags" value { int64_list { value: [0, 1] } } }
        }
        """
    )


def test_an_empty_list_is_a_feature_of_no_kind() -> None:
    example = example_from_json({"none": []})
    assert example.features.feature["none"].WhichOneof("kind") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1], "Example must be JSON object but got JSON Array"),
        ("x", "Example must be JSON object but got JSON String"),
        ({"a": [1, "x"]}, "Unexpected element type in feature: a expecting type: int64"),
        ({"a": [1.5, 2]}, "Unexpected element type in feature: a expecting type: float"),
        ({"a": ["x", 2.5]}, "Unexpected element type in feature: a expecting type: bytes"),
        ({"a": [True, 1.5]}, "Unexpected element type in feature: a expecting type: int64"),
        ({"a": None}, "Feature: a has element with unexpected JSON type: Null"),
        ({"a": [[1]]}, "Feature: a has element with unexpected JSON type: Array"),
        ({"a": {"b": 1}}, "Feature: a has element with unexpected JSON type: Object"),
        ({"a": 1e39}, "Cannot convert JSON value: 1e+39 to float without loss of precision."),
        ({"a": 2**63}, "Feature: a has uint64 element. Only int64 is supported."),
        ({"a": {"b64": "!!"}}, "Unable to base64 decode"),
    ],
)
def test_example_from_json_errors(value: object, message: str) -> None:
    with pytest.raises(ServingError) as caught:
        example_from_json(value)
    assert (caught.value.code, caught.value.message) == (Code.INVALID_ARGUMENT, message)


def test_examples_from_json_prefixes_the_context() -> None:
    serialized = examples_from_json({"context": {"lang": "en"}, "examples": [{"x": 1.0}, {}]})
    assert [dict(parse(item).features.feature) for item in serialized] == [
        dict(
            features(
                'features { feature { key: "lang" value { bytes_list { value: "en" } } } '
                'feature { key: "x" value { float_list { value: 1 } } } }'
            ).features.feature
        ),
        dict(
            features(
                'features { feature { key: "lang" value { bytes_list { value: "en" } } } }'
            ).features.feature
        ),
    ]
    assert examples_from_json({"examples": [{"x": 2}]}) == [
        features(
            'features { feature { key: "x" value { int64_list { value: 2 } } } }'
        ).SerializeToString()
    ]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"context": {"a": 1}},
            'JSON Value: {\n    "context": {\n        "a": 1\n    }\n} When method is classify, '
            "key 'examples' is expected and was not found",
        ),
        (
            {"examples": {}},
            "JSON Value: {\n    \"examples\": {}\n} Expecting 'examples' value to be an list/array",
        ),
        (
            {"examples": []},
            "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array",
        ),
        ({"examples": [1]}, "Example must be JSON object but got JSON Number"),
        ({"context": [], "examples": [{}]}, "Example must be JSON object but got JSON Array"),
    ],
)
def test_examples_from_json_errors(doc: dict, message: str) -> None:
    with pytest.raises(ServingError) as caught:
        examples_from_json(doc)
    assert (caught.value.code, caught.value.message) == (Code.INVALID_ARGUMENT, message)
