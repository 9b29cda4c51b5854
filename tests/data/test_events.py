"""Event datasets: binning against hand counts, the N-MNIST file format through tonic, caching."""
import numpy as np
import pytest

from spiketandem.data import events
from spiketandem.data.errors import DatasetNotFoundError
from event_builders import write_nmnist_recording
from spiketandem.data.events import bin_events, load_event_dataset


def test_time_binning_by_hand():
    # span = 19 - 0 + 1 = 20 us, T = 2: bin = floor(2 t / 20) -> t = 0, 5 -> 0; t = 10, 19 -> 1
    x, y, t, p = np.array([1, 1, 2, 3]), np.array([0, 0, 1, 2]), np.array([10, 0, 5, 19]), np.array([1, 1, 0, 1])
    f = bin_events(x, y, t, p, T=2, sensor=(3, 4), mode="time")
    assert f.shape == (2, 2, 3, 4) and f.dtype == np.uint16
    expected = np.zeros((2, 2, 3, 4), dtype=np.uint16)
    expected[0, 1, 0, 1] = 1   # t=0  (x=1, y=0, ON)
    expected[0, 0, 1, 2] = 1   # t=5  (x=2, y=1, OFF)
    expected[1, 1, 0, 1] = 1   # t=10 (x=1, y=0, ON)
    expected[1, 1, 2, 3] = 1   # t=19 (x=3, y=2, ON)
    np.testing.assert_array_equal(f, expected)


def test_count_binning_by_hand():
    # 5 events, T = 2: bin = floor(2 i / 5) = 0, 0, 0, 1, 1 in time order
    t = np.array([40, 10, 30, 20, 50])
    f = bin_events(np.zeros(5, int), np.zeros(5, int), t, np.ones(5, int), T=2, sensor=(1, 1), mode="count")
    assert f[:, 1, 0, 0].tolist() == [3, 2] and f[:, 0].sum() == 0


def test_nmnist_format_roundtrip_through_tonic(tmp_path):
    pytest.importorskip("tonic", reason="tonic is the optional reader of event files")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 34, 50), rng.integers(0, 34, 50)
    t, p = np.sort(rng.integers(0, 300_000, 50)), rng.integers(0, 2, 50)
    write_nmnist_recording(tmp_path / "a.bin", x, y, t, p)
    rx, ry, rt, rp = events._read(tmp_path / "a.bin", events.event_spec("nmnist"))
    for a, b in ((x, rx), (y, ry), (t, rt), (p, rp)):
        np.testing.assert_array_equal(a, np.asarray(b))


def _synthetic_nmnist(root, per_class=2):
    rng = np.random.default_rng(1)
    sizes = {}
    for split in ("Train", "Test"):
        for digit in (0, 1):
            for k in range(per_class):
                n = int(rng.integers(20, 60))
                # digit 0 fires on the left half, digit 1 on the right: a learnable synthetic task
                x = rng.integers(0, 17, n) + 17 * digit
                write_nmnist_recording(root / split / str(digit) / f"{k:05d}.bin", x, rng.integers(0, 34, n),
                                       np.sort(rng.integers(0, 100_000, n)), rng.integers(0, 2, n))
                sizes[(split, digit, k)] = n
    return sizes


def test_load_bins_caches_and_rekeys(tmp_path, monkeypatch):
    pytest.importorskip("tonic", reason="tonic is the optional reader of event files")
    sizes = _synthetic_nmnist(tmp_path / "NMNIST")
    data = load_event_dataset("nmnist", tmp_path, T=4, cache_dir=tmp_path / "cache")
    assert data.train_x.shape == (4, 4, 2, 34, 34) and data.test_x.shape == (4, 4, 2, 34, 34)
    assert data.train_y.tolist() == [0, 0, 1, 1]
    assert [int(f.sum()) for f in data.train_x] == [sizes[("Train", d, k)] for d in (0, 1) for k in (0, 1)]
    assert data.train_x[data.train_y == 0][..., 17:].sum() == 0  # digit 0 only on the left half
    caches = list((tmp_path / "cache" / "events").glob("*.npz"))
    assert len(caches) == 1

    def no_read(*a, **k):
        raise AssertionError("a cached dataset must not be re-read")
    monkeypatch.setattr(events, "_read", no_read)
    again = load_event_dataset("nmnist", tmp_path, T=4, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.train_x, data.train_x)
    monkeypatch.undo()
    load_event_dataset("nmnist", tmp_path, T=2, mode="count", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "events").glob("*.npz"))) == 2  # new settings, new cache


def test_missing_dataset_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="Train/ and Test/.*To get it"):
        load_event_dataset("nmnist", tmp_path, T=4, cache_dir=tmp_path / "cache")
    with pytest.raises(DatasetNotFoundError, match="no data_dir"):
        load_event_dataset("nmnist", None)


def test_frames_student_sees_frame_t_at_step_t():
    """IF layer on W x_t (hand loop, reset to zero) equals the frames student's first layer."""
    import torch
    from torch import nn

    from spiketandem.neuron import NeuronConfig, RunContext
    from spiketandem.student import build_student
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
    frames = torch.rand(3, 4, 2, 2, 2)  # [B, T, C, H, W]
    student = build_student(teacher, NeuronConfig(kind="if", reset="zero"), torch.zeros(2, 2, 2, 2),
                            encoding="frames", calibration_images=frames)
    ctx = RunContext(T=4, batch=3, records={})
    with torch.no_grad():
        student.run(frames, ctx)
    theta = float(student.neurons[student.layers[0].name].threshold)
    W, b = teacher[1].weight.detach(), teacher[1].bias.detach()
    u, expected = torch.zeros(3, 5), []
    for t in range(4):
        u = u + frames[:, t].flatten(1) @ W.T + b
        s = (u >= theta).float()
        u = u * (1 - s)
        expected.append(s)
    assert torch.equal(ctx.records[student.layers[0].name], torch.stack(expected))
    assert torch.stack(expected).sum() > 0
    with pytest.raises(Exception, match="one frame per step"):
        student(frames, 3)


@pytest.fixture(scope="module")
def nmnist_frames(tmp_path_factory):
    pytest.importorskip("tonic", reason="tonic is the optional reader of event files")
    import torch
    root = tmp_path_factory.mktemp("nmnist")
    _synthetic_nmnist(root / "NMNIST", per_class=30)
    data = load_event_dataset("nmnist", root, T=4, cache_dir=root / "cache")
    as_t = lambda a: torch.tensor(a.astype(np.float32))  # noqa: E731
    return as_t(data.train_x), torch.tensor(data.train_y), as_t(data.test_x), torch.tensor(data.test_y)


def test_nmnist_frames_train_end_to_end_with_ltl(nmnist_frames):
    import torch
    from torch import nn

    from spiketandem import api
    train_x, train_y, test_x, test_y = nmnist_frames
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool2d(4), nn.Flatten(),
                            nn.Linear(64, 2))
    opt = torch.optim.Adam(teacher.parameters(), 1e-2)
    for _ in range(30):  # the teacher learns on time-integrated frames
        opt.zero_grad()
        nn.functional.cross_entropy(teacher(train_x.mean(1)), train_y).backward()
        opt.step()
    student = api.train_ltl(teacher, train_x, train_y, T=4, epochs=3, reset="zero", batch_size=16)
    assert student.encoding == "frames"
    assert api.accuracy(student, test_x, test_y, T=4) >= 0.9  # two classes: chance is 0.5


def test_nmnist_frames_train_end_to_end_with_stbp(nmnist_frames):
    from spiketandem import api
    train_x, train_y, test_x, test_y = nmnist_frames
    # a constant learning rate: this 8-epoch budget on 60 recordings underfits under the default cosine decay
    # (measured, seeds 0/1/2: constant 0.85/0.82/0.77, cosine 0.68/0.63/0.67)
    student = api.train("stbp", train_x, train_y, arch="digits-mlp", width=0.25, T=4, epochs=8, batch_size=16,
                        lr_schedule="constant")
    assert api.accuracy(student, test_x, test_y, T=4) >= 0.8  # two classes: chance is 0.5


def test_dvs_gesture_in_tonic_layout(tmp_path):
    # tonic's converted DVS128 Gesture: ibmGestureTrain/user01_fluorescent/<label>.npy, columns x, y, p, t [ms]
    root = tmp_path / "DVSGesture"
    for split in ("ibmGestureTrain", "ibmGestureTest"):
        for label in (0, 10):
            ev = np.array([[5, 7, 1, 0.0], [5, 7, 1, 1.5], [100, 3, 0, 3.0]])  # t = 0, 1500, 3000 us
            (root / split / "user01_fluorescent").mkdir(parents=True, exist_ok=True)
            np.save(root / split / "user01_fluorescent" / f"{label}.npy", ev)
    data = load_event_dataset("dvs-gesture", tmp_path, T=2, cache_dir=tmp_path / "cache")
    assert data.train_x.shape == (2, 2, 2, 128, 128) and data.train_y.tolist() == [0, 10]
    # span 3001 us, T=2: bins floor(2 t / 3001) = 0, 0, 1
    f = data.train_x[0]
    assert f[0, 1, 7, 5] == 2 and f[1, 0, 3, 100] == 1 and f.sum() == 3
