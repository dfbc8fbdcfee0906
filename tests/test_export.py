"""The exported SavedModel: layout, signatures' documented behaviour, loadable the ways TF Serving and
other TF programs load it. Expected answers are computed here, independently of the export code,
from ``model.query_embeddings`` / ``model.item_embeddings`` and the vocabulary."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf import SASRec, SASRecConfig
from sasrec_tf._compat import keras
from sasrec_tf.artifacts import TrainedModel, save_trained
from sasrec_tf.cli import main
from sasrec_tf.data.vocab import ItemVocabulary
from sasrec_tf.export import SIGNATURES, UNKNOWN_SCORE, export_saved_model
from sasrec_tf.testing.models import TRAINED_MAX_LEN as MAX_LEN
from sasrec_tf.testing.models import TRAINED_NUM_ITEMS as NUM_ITEMS
from sasrec_tf.testing.models import make_trained

K = 5


# ------------------------------------------------------------------------------- reference helpers
def reference_scores(trained: TrainedModel, histories) -> np.ndarray:
    """``[B, N + 1]`` scores by the documented contract; column 0 (padding) is -inf."""
    model, vocab = trained.model, trained.vocab
    packed = np.zeros((len(histories), model.max_len), np.int64)
    empty = []
    for row, history in enumerate(histories):
        known = [item for item in history if item in vocab][-model.max_len:]
        empty.append(not known)
        if known:
            packed[row, model.max_len - len(known):] = vocab.encode(known)
    query = model.query_embeddings(tf.constant(packed)).numpy()
    scores = query @ model.item_embeddings().numpy().T
    scores[np.array(empty, bool)] = trained.item_counts.astype(np.float32)
    scores[:, 0] = -np.inf
    return scores


def reference_top_k(trained: TrainedModel, histories, k: int = K, exclude_history: bool = True):
    scores = reference_scores(trained, histories)
    if exclude_history:
        for row, history in enumerate(histories):
            known = [item for item in history if item in trained.vocab]
            scores[row, trained.vocab.encode(known)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    ids = np.where(np.isfinite(top), trained.vocab.decode(order), "")
    return ids, top, scores


def check_top_k(trained, histories, got_ids, got_scores, k=K, exclude_history=True):
    """The served top-k is a correct top-k: the reference's scores in order, each returned id
    carrying its own reference score (so excluded items cannot appear), distinct ids, and the
    reference's ids wherever it has no near-tie."""
    expected_ids, expected_scores, all_scores = reference_top_k(trained, histories, k, exclude_history)
    got_ids, got_scores = np.asarray(got_ids).astype(str), np.asarray(got_scores)
    finite = np.isfinite(expected_scores)
    np.testing.assert_allclose(got_scores[finite], expected_scores[finite], rtol=1e-4, atol=1e-5)
    assert (got_scores[~finite] == UNKNOWN_SCORE).all() and (got_ids[~finite] == "").all()
    dense = trained.vocab.encode(np.where(finite, got_ids, ""))
    own = np.take_along_axis(all_scores, dense, axis=1)
    np.testing.assert_allclose(own[finite], got_scores[finite], rtol=1e-4, atol=1e-5)
    for row in range(len(histories)):
        assert len(set(dense[row][finite[row]])) == finite[row].sum()
        for column in np.flatnonzero(finite[row]):
            rest = np.delete(all_scores[row], trained.vocab.encode([expected_ids[row, column]])[0])
            if np.abs(rest - expected_scores[row, column]).min() > 1e-4:
                assert got_ids[row, column] == expected_ids[row, column]


def pad(histories, lead: bool = True) -> np.ndarray:
    """Rows padded with "" (and a leading "" column, as the clients send)."""
    width = max((len(h) for h in histories), default=0) + int(lead)
    out = np.full((len(histories), width), "", dtype=object)
    for row, history in enumerate(histories):
        out[row, int(lead): int(lead) + len(history)] = history
    return out


def sample_histories(trained, count=12, seed=3):
    rng = np.random.default_rng(seed)
    ids = trained.vocab.ids
    return [[ids[i] for i in rng.integers(0, len(ids), size=rng.integers(1, 2 * MAX_LEN))] for _ in range(count)]


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def model_dir(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    save_trained(path, trained.model, trained.vocab, item_counts=trained.item_counts)
    return path


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    return export_saved_model(model_dir, base, "sasrec", k=K)


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported))


def run_signature(loaded, name, **inputs):
    outputs = loaded.signatures[name](**{key: tf.constant(value) for key, value in inputs.items()})
    return {key: value.numpy() for key, value in outputs.items()}


# ------------------------------------------------------------------------------- layout
def test_export_writes_a_numbered_version_with_vocab_asset_warmup_and_no_temporary_leftovers(exported, trained):
    assert exported.name == "1" and exported.parent.name == "sasrec"
    for name in ("saved_model.pb", "variables", "assets/vocab.txt", "assets.extra/tf_serving_warmup_requests",
                 "assets.extra/sasrec_export.json"):
        assert (exported / name).exists(), name
    assert (exported / "assets/vocab.txt").read_text(encoding="utf-8").splitlines() == trained.vocab.ids
    info = json.loads((exported / "assets.extra/sasrec_export.json").read_text())
    assert (info["k"], info["max_len"], info["num_items"]) == (K, MAX_LEN, NUM_ITEMS)
    assert [p.name for p in exported.parent.iterdir()] == ["1"]


def test_next_export_gets_the_next_version_and_existing_versions_are_never_overwritten(model_dir, tmp_path,
                                                                                        capsys):
    first = export_saved_model(model_dir, tmp_path, "m", version=3, k=2, warmup=False)
    assert first.name == "3"
    assert main(["export", "--model", str(model_dir), "--export-base", str(tmp_path), "--name", "m",
                 "--k", "2", "--no-warmup"]) == 0
    assert f"version 4 to {tmp_path / 'm' / '4'}" in capsys.readouterr().out
    assert main(["export", "--model", str(model_dir), "--export-base", str(tmp_path), "--name", "m",
                 "--version", "4"]) == 2
    assert "immutable" in capsys.readouterr().err
    with pytest.raises(ValueError, match="k must be in"):  # fails after staging began: nothing is left
        export_saved_model(model_dir, tmp_path, "m", k=NUM_ITEMS + 1)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["3", "4"]


def test_models_with_a_user_embedding_are_refused_with_the_reason(tmp_path):
    keras.utils.set_random_seed(0)
    model = SASRec(SASRecConfig(max_len=4, hidden_units=8, num_blocks=1, use_user_embedding=True),
                   num_items=10, num_users=3).build_weights()
    trained = TrainedModel(model, ItemVocabulary([f"i{i}" for i in range(10)]))
    with pytest.raises(ValueError, match="user embedding"):
        export_saved_model(trained, tmp_path, "m")
    assert not list((tmp_path / "m").iterdir())


# ------------------------------------------------------------------------------- signatures
def test_serving_default_returns_the_in_process_top_k_excluding_the_history(loaded, trained):
    histories = sample_histories(trained)
    out = run_signature(loaded, "serving_default", history=pad(histories))
    assert out["item_ids"].shape == (len(histories), K) and out["scores"].dtype == np.float32
    ids = out["item_ids"].astype(str)
    check_top_k(trained, histories, ids, out["scores"])
    for row, history in enumerate(histories):
        assert not set(ids[row]) & set(history)
        assert "" not in ids[row]


def test_recommend_including_history_may_return_history_items(loaded, trained):
    histories = sample_histories(trained, seed=4)
    out = run_signature(loaded, "recommend_including_history", history=pad(histories))
    check_top_k(trained, histories, out["item_ids"].astype(str), out["scores"], exclude_history=False)
    # The unexcluded list is the plain top-k of the model's scores, so it shows a history item somewhere.
    hits = sum(bool(set(row.astype(str)) & set(h)) for row, h in zip(out["item_ids"], histories))
    assert hits > 0


def test_unknown_ids_and_padding_anywhere_are_ignored(loaded, trained):
    ids = trained.vocab.ids
    clean = [[ids[3], ids[9], ids[4]], [ids[7]]]
    noisy = [["", "nope", ids[3], "", ids[9], "unknown-2", ids[4], ""], ["???", ids[7], "", ""]]
    for signature in ("serving_default", "recommend_including_history", "embed"):
        a = run_signature(loaded, signature, history=pad(clean, lead=False))
        b = run_signature(loaded, signature, history=pad(noisy, lead=False))
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_over_long_histories_use_the_most_recent_max_len_items_but_exclude_every_history_item(loaded, trained):
    ids = trained.vocab.ids
    long = [ids[i] for i in range(3 * MAX_LEN)]
    recent = long[-MAX_LEN:]
    a = run_signature(loaded, "embed", history=pad([long]))["embedding"]
    b = run_signature(loaded, "embed", history=pad([recent]))["embedding"]
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    out = run_signature(loaded, "serving_default", history=pad([long]))
    assert not set(out["item_ids"][0].astype(str)) & set(long)
    check_top_k(trained, [long], out["item_ids"].astype(str), out["scores"])


def test_empty_histories_get_the_most_popular_items_scored_by_their_training_counts(loaded, trained):
    popular = np.argsort(-trained.item_counts, kind="stable")[:K]
    expected_ids = trained.vocab.decode(popular).astype(str)
    for history in (np.full((2, 3), "", dtype=object), np.array([["nope", ""], ["", "unknown"]], dtype=object),
                    np.zeros((2, 0), dtype=object)):
        out = run_signature(loaded, "serving_default", history=history)
        for row in range(2):
            np.testing.assert_array_equal(out["item_ids"][row].astype(str), expected_ids)
            np.testing.assert_array_equal(out["scores"][row], trained.item_counts[popular].astype(np.float32))
        assert not run_signature(loaded, "embed", history=history)["embedding"].any()


def test_a_history_covering_almost_the_catalogue_pads_the_top_k_with_empty_ids(loaded, trained):
    history = trained.vocab.ids[:-2]  # two items remain eligible, k = 5
    out = run_signature(loaded, "serving_default", history=pad([history]))
    ids, scores = out["item_ids"][0].astype(str), out["scores"][0]
    assert sorted(ids[:2]) == sorted(trained.vocab.ids[-2:])
    assert list(ids[2:]) == ["", "", ""] and (scores[2:] == UNKNOWN_SCORE).all() and np.isfinite(scores).all()


def test_score_matches_in_process_scores_and_gives_unknown_candidates_the_lowest_float(loaded, trained):
    ids = trained.vocab.ids
    histories = [[ids[1], ids[2], ids[3]], [], [ids[7]]]
    candidates = np.array([[ids[5], "nope", ids[1]], [ids[0], ids[9], ""], [ids[7], ids[8], ids[20]]], dtype=object)
    got = run_signature(loaded, "score", history=pad(histories), candidates=candidates)["scores"]
    reference = reference_scores(trained, histories)
    dense = trained.vocab.encode(candidates, unknown="zero")
    for row in range(3):
        for column in range(3):
            if dense[row, column] == 0:
                assert got[row, column] == UNKNOWN_SCORE
            else:
                np.testing.assert_allclose(got[row, column], reference[row, dense[row, column]], rtol=1e-4, atol=1e-5)
    assert got[1, 0] == trained.item_counts[1]  # empty history: popularity


def test_embed_and_item_embeddings_are_the_model_query_and_item_vectors(loaded, trained):
    ids = trained.vocab.ids
    histories = [[ids[4], ids[5]], [ids[6]]]
    packed = np.zeros((2, MAX_LEN), np.int64)
    packed[0, -2:], packed[1, -1] = [5, 6], 7
    np.testing.assert_allclose(run_signature(loaded, "embed", history=pad(histories))["embedding"],
                               trained.model.query_embeddings(tf.constant(packed)).numpy(), rtol=1e-5, atol=1e-6)
    matrix = trained.model.item_embeddings().numpy()
    out = run_signature(loaded, "item_embeddings", item_ids=np.array([ids[0], "nope", ids[7]], dtype=object))
    np.testing.assert_array_equal(out["known"], [True, False, True])
    np.testing.assert_allclose(out["embeddings"], [matrix[1], np.zeros(16), matrix[8]], rtol=1e-6)
    everything = loaded.all_item_embeddings()
    assert [x.decode() for x in everything["item_ids"].numpy()] == ids
    np.testing.assert_allclose(everything["embeddings"].numpy(), matrix[1:])


def test_every_signature_is_batch_major_with_string_ids(exported):
    from sasrec_tf.serving.servable import read_signature_defs

    defs = read_signature_defs(exported)
    assert set(SIGNATURES) <= set(defs)
    for name in SIGNATURES:
        for tensor in defs[name].inputs.values():
            assert tensor.dtype == tf.string.as_datatype_enum
            assert tensor.tensor_shape.dim[0].size == -1
        for tensor in defs[name].outputs.values():
            assert tensor.tensor_shape.dim[0].size == -1


def test_warmup_records_are_predict_requests_for_every_signature_that_run(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    from sasrec_tf.serving.servable import Servable

    records = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in
               tf.data.TFRecordDataset(str(exported / "assets.extra/tf_serving_warmup_requests"))]
    assert {r.predict_log.request.model_spec.signature_name for r in records} == set(SIGNATURES)
    for record in records:  # the history's first element is "", the safe batching pad value
        if "history" in record.predict_log.request.inputs:
            assert tf.make_ndarray(record.predict_log.request.inputs["history"])[0, 0] == b""
    assert Servable("sasrec", 1, exported).warmup() == len(records)


def test_every_registry_entry_is_an_exported_signature_with_warmup_requests_at_batch_1_and_2(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    from sasrec_tf.export import SIGNATURE_REGISTRY
    from sasrec_tf.serving.servable import read_signature_defs

    assert SIGNATURES == tuple(SIGNATURE_REGISTRY) and SIGNATURES[0] == "serving_default"
    defs = read_signature_defs(exported)
    assert set(defs) - {"__saved_model_init_op"} == set(SIGNATURE_REGISTRY)
    warmup = {}
    for record in tf.data.TFRecordDataset(str(exported / "assets.extra/tf_serving_warmup_requests")):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        assert request.model_spec.name == "sasrec"
        warmup.setdefault(request.model_spec.signature_name, []).append(request)
    assert list(warmup) == list(SIGNATURE_REGISTRY)  # in registry order
    for name, entry in SIGNATURE_REGISTRY.items():
        signature = defs[name]
        assert signature.method_name == "tensorflow/serving/predict"
        assert set(signature.inputs) == set(entry.input_names) and set(signature.outputs) == set(entry.outputs)
        for spec in entry.inputs:
            tensor = signature.inputs[spec.name]
            assert tensor.dtype == spec.dtype.as_datatype_enum
            assert [d.size for d in tensor.tensor_shape.dim] == [-1 if d is None else d for d in spec.shape]
        batches = []
        for request in warmup[name]:
            assert set(request.inputs) == set(entry.input_names)
            sizes = {key: tf.make_ndarray(proto).shape[0] for key, proto in request.inputs.items()}
            assert len(set(sizes.values())) == 1, sizes
            batches.append(next(iter(sizes.values())))
        assert batches == [1, 2], (name, batches)
    info = json.loads((exported / "assets.extra/sasrec_export.json").read_text())
    assert info["signatures"] == list(SIGNATURE_REGISTRY)


def test_the_module_docstring_and_the_help_text_document_every_registry_entry():
    import sasrec_tf.export as export

    documented = [line.strip("`") for line in export.__doc__.splitlines()
                  if line.startswith("``") and line.endswith("``") and " " not in line]
    assert documented == list(export.SIGNATURE_REGISTRY)
    paragraphs = export.__doc__.split("\n``")
    help_lines = export.describe_signatures().splitlines()
    assert len(help_lines) == len(export.SIGNATURE_REGISTRY)
    for line, (name, entry) in zip(help_lines, export.SIGNATURE_REGISTRY.items()):
        paragraph = next(p for p in paragraphs if p.startswith(f"{name}``\n"))
        for tensor in (*entry.input_names, *entry.outputs):
            assert f"``{tensor}``" in paragraph, (name, tensor)
        assert line.strip().startswith(f"{name}({', '.join(entry.input_names)}) -> {', '.join(entry.outputs)}: ")
        assert entry.description in line

# ------------------------------------------------------------------------------- loadable elsewhere
FOREIGN_PROGRAM = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    path, histories = sys.argv[1], json.loads(sys.argv[2])
    width = 1 + max(len(h) for h in histories)
    batch = [[""] + h + [""] * (width - 1 - len(h)) for h in histories]
    result = {}

    loaded = tf.saved_model.load(path)
    result["load"] = loaded.signatures["serving_default"](history=tf.constant(batch))["item_ids"].numpy()

    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(batch)).batch(2)
    dataset = dataset.map(lambda history: loaded.signatures["serving_default"](history=history)["item_ids"])
    result["tf_data_map"] = np.concatenate([b.numpy() for b in dataset])

    with tf.Graph().as_default(), tf.compat.v1.Session() as session:  # TF Serving's loader
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        signature = meta_graph.signature_def["serving_default"]
        result["session"] = session.run(signature.outputs["item_ids"].name,
                                        {signature.inputs["history"].name: batch})

    assert "sasrec_tf" not in sys.modules and "tf_keras" not in sys.modules
    print(json.dumps({key: [[x.decode() for x in row] for row in value] for key, value in result.items()}))
""")


def _foreign_env():
    env = {key: value for key, value in os.environ.items() if key != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONPATH"] = ""
    return env


@pytest.fixture(scope="module")
def programs_elsewhere(exported, trained, tmp_path_factory):
    """Start both subprocesses at once (each pays TensorFlow's import): a program that never
    imports sasrec_tf, and saved_model_cli; the tests below collect their output."""
    tmp = tmp_path_factory.mktemp("elsewhere")
    ids = trained.vocab.ids
    histories = sample_histories(trained, count=5, seed=11)
    cli_history = [ids[2], ids[3], "nope"]
    program = tmp / "foreign.py"
    program.write_text(FOREIGN_PROGRAM)
    options = dict(cwd=tmp, env=_foreign_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    foreign = subprocess.Popen([sys.executable, str(program), str(exported), json.dumps(histories)], **options)
    cli = subprocess.Popen(
        ["saved_model_cli", "run", "--dir", str(exported), "--tag_set", "serve", "--signature_def",
         "serving_default", "--input_exprs", f"history={[[''] + cli_history]!r}", "--outdir", str(tmp / "out")],
        **options)
    yield {"foreign": (foreign, histories), "cli": (cli, cli_history, tmp / "out")}
    for process in (foreign, cli):
        if process.poll() is None:
            process.kill()


def test_loads_without_sasrec_tf_in_tf_data_and_through_the_session_loader(programs_elsewhere, trained):
    process, histories = programs_elsewhere["foreign"]
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    expected_ids, _, _ = reference_top_k(trained, histories)
    for way in ("load", "tf_data_map", "session"):
        np.testing.assert_array_equal(np.array(result[way]), expected_ids.astype(str), err_msg=way)


def test_saved_model_cli_runs_the_default_signature_from_python_literals(programs_elsewhere, trained):
    process, history, out = programs_elsewhere["cli"]
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr[-3000:]
    got = np.load(out / "item_ids.npy", allow_pickle=True).astype(str)
    expected_ids, _, _ = reference_top_k(trained, [history])
    np.testing.assert_array_equal(got, expected_ids.astype(str))


def test_blockwise_top_k_for_large_catalogues_equals_top_k_including_ties():
    from sasrec_tf.export import exact_top_k

    rng = np.random.default_rng(0)
    scores = np.stack([
        rng.normal(size=20_001),                       # distinct values
        rng.integers(0, 50, size=20_001),              # heavy ties (popularity-like)
        np.where(rng.random(20_001) < 0.9995, UNKNOWN_SCORE, rng.normal(size=20_001)),  # < k eligible
    ]).astype(np.float32)
    for k in (1, 10, 37):
        expected = tf.math.top_k(scores, k=k)
        got = exact_top_k(tf.constant(scores), k)
        np.testing.assert_array_equal(got[0].numpy(), expected.values.numpy())
        np.testing.assert_array_equal(got[1].numpy(), expected.indices.numpy())


def test_the_newer_block_and_training_options_export_and_serve_the_in_process_top_k(tmp_path):
    """LiGR blocks, BSARec's frequency mixing, RecTools' item options and the contrastive term change
    training only or add weights: every signature still builds, and the served top-k is the model's."""
    trained = make_trained(seed=5, layer_norm="ligr", ffn_units=32, ffn_activation="gelu", item_dropout_rate=0.2,
                           scale_item_embedding=False, embedding_initializer="xavier_normal", contrastive_weight=0.1,
                           frequency_mixing=0.7, frequency_cutoff=5)
    save_trained(tmp_path / "model", trained.model, trained.vocab, item_counts=trained.item_counts)
    loaded = tf.saved_model.load(str(export_saved_model(tmp_path / "model", tmp_path / "exports", "sasrec", k=K)))
    assert set(SIGNATURES) <= set(loaded.signatures)
    histories = sample_histories(trained)
    out = run_signature(loaded, "serving_default", history=pad(histories))
    check_top_k(trained, histories, out["item_ids"], out["scores"])


def test_export_reports_each_step_and_its_progress_reaches_the_total(model_dir, tmp_path):
    seen = []
    export_saved_model(model_dir, tmp_path, "m", k=2, progress=lambda *step: seen.append(step))
    assert [(done, total) for _, done, total in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert "warmup" in seen[2][0] and "version 1" in seen[3][0]
    seen.clear()
    export_saved_model(model_dir, tmp_path, "m", k=2, warmup=False, progress=lambda *step: seen.append(step))
    assert [(done, total) for _, done, total in seen] == [(1, 3), (2, 3), (3, 3)]
