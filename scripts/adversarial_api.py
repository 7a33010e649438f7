"""The Python API's cases of ``scripts/adversarial.py``: bad data for ``vmivae.fit`` and misuse of the measuring API.

Each is code run in a fresh process (``tmp`` and ``run`` are the case's folder and its finished smoke run): a
:class:`vmivae.VMIVAEError` exits 2 with its sentence, success exits 0, anything else is a traceback.
"""

from __future__ import annotations

from adversarial import Case

FIT = "vmivae.fit(vmivae.make_config('paper-joint', 'smoke', ['steps=2', 'log_every=1', 'batch_size=16']), data={data}, progress=False)"
IMAGES = "torch.rand(64, 1, 28, 28)"

# data given to fit(): (label, expression, exit status, words the message must hold)
DATA = [
    ("a generator of tensors", f"(x for x in {IMAGES})", (0, 2), ()),
    ("itertools.repeat", f"__import__('itertools').repeat({IMAGES}[0])", 2, ("repeat",)),
    ("itertools.count", "__import__('itertools').count()", 2, ("count",)),
    ("a list of tensors", f"list({IMAGES})", (0, 2), ()),
    ("a pandas DataFrame", "__import__('pandas').DataFrame(np.random.rand(64, 784))", 2, ("DataFrame",)),
    ("a sparse tensor", f"{IMAGES}.to_sparse()", 2, ("sparse",)),
    ("a meta tensor", "torch.empty(64, 1, 28, 28, device='meta')", 2, ("meta",)),
    ("NaN pixels", "torch.full((64, 1, 28, 28), float('nan'))", 2, ("nan",)),
    ("pixels above 1", f"{IMAGES} * 2", 2, ("values", "[0, 1]")),
    ("negative pixels", f"{IMAGES} * 4 - 2", 2, ("values", "[-1, 1]")),  # below -1: [-1, 1] itself is a valid range
    ("uint8 0-255", "torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)", 0, ()),
    ("N x 28 x 28", "torch.rand(64, 28, 28)", (0, 2), ()),
    ("N x 3 x 28 x 28", "torch.rand(64, 3, 28, 28)", (0, 2), ()),
    ("tiny 7 x 7 images", "torch.rand(64, 1, 7, 7)", 2, ("7",)),
    ("no images", "torch.rand(0, 1, 28, 28)", 2, ("no images",)),
    ("one image", "torch.rand(1, 1, 28, 28)", (0, 2), ()),
    ("complex pixels", "torch.rand(64, 1, 28, 28, dtype=torch.complex64)", 2, ("complex",)),
    ("bool pixels", "torch.rand(64, 1, 28, 28) > 0.5", (0, 2), ()),
    ("float64 numpy", "np.random.rand(64, 1, 28, 28)", 0, ()),
    ("a list of strings", "['a.png', 'b.png']", 2, ("str",)),
    ("a numpy object array", "np.array([object()] * 64)", 2, ("object",)),
    ("a dict", f"{{'images': {IMAGES}}}", 0, ()),  # a dict with the images under a key is a documented form
    ("a tensor that requires grad", f"{IMAGES}.requires_grad_()", (0, 2), ()),
    ("a number", "3.0", 2, ("float",)),
    ("a 1-D tensor", "torch.rand(784)", 2, ("shape",)),
    ("(images, labels)", f"({IMAGES}, torch.randint(0, 10, (64,)))", 0, ()),
    ("(images, labels, extra)", f"({IMAGES}, torch.randint(0, 10, (64,)), 1)", 2, ("labels",)),
    ("(images, too few labels)", f"({IMAGES}, torch.randint(0, 10, (3,)))", 2, ("labels",)),
    ("(images, float labels)", f"({IMAGES}, torch.rand(64))", 2, ("labels",)),
    ("(images, negative labels)", f"({IMAGES}, -torch.ones(64, dtype=torch.long))", 2, ("labels",)),
    ("a string path", "'{tmp}/nope.npy'", 2, ("nope",)),
    ("None with dataset=custom", "None", 2, ("custom",)),
]

# measuring API misuse: (label, code, exit status, words the message must hold)
MEASURE = [
    ("estimate_mi path nosuch", "vmivae.estimate_mi(run, path='nosuch', settings='smoke')", 2, ("nosuch",)),
    ("estimate_mi settings nosuch", "vmivae.estimate_mi(run, settings='nosuch')", 2, ("nosuch",)),
    ("estimate_mi settings a number", "vmivae.estimate_mi(run, settings=5)", 2, ("settings",)),
    ("estimate_mi a missing folder", "vmivae.estimate_mi(str(tmp / 'nope'), settings='smoke')", 2, ("nope",)),
    ("estimate_mi a number", "vmivae.estimate_mi(42, settings='smoke')", 2, ("42",)),
    ("estimate_mi None", "vmivae.estimate_mi(None, settings='smoke')", 2, ("None",)),
    ("LatentSpec(-1)", "from vmivae.latents import LatentSpec\nLatentSpec(-1)", 2, ("-1",)),
    ("LatentSpec(2, 0)", "from vmivae.latents import LatentSpec\nLatentSpec(2, 0)", 2, ("categor",)),
    ("LatentSpec('2')", "from vmivae.latents import LatentSpec\nLatentSpec('2')", 2, ("continuous",)),
    ("a NaN decoder", "from vmivae.latents import LatentSpec\n"
     "vmivae.estimate_mi(lambda z: torch.full((z.shape[0], 1, 28, 28), float('nan')), LatentSpec(2, 10), settings='smoke')", 2, ("nan",)),
    ("a decoder of the wrong shape", "from vmivae.latents import LatentSpec\n"
     "vmivae.estimate_mi(lambda z: torch.rand(z.shape[0], 5), LatentSpec(2, 10), settings='smoke')", 2, ("shape",)),
    ("a decoder that raises", "from vmivae.latents import LatentSpec\n"
     "vmivae.estimate_mi(lambda z: 1 / 0, LatentSpec(2, 10), settings='smoke')", (1, 2), ()),
    ("a decoder without a LatentSpec", "vmivae.estimate_mi(lambda z: torch.rand(z.shape[0], 1, 28, 28), settings='smoke')", 2, ("LatentSpec",)),
    ("estimate_mi device cuda", "vmivae.estimate_mi(run, settings='smoke', device='cuda')", 2, ("cuda",)),
    ("estimate_mi device gpu", "vmivae.estimate_mi(run, settings='smoke', device='gpu')", 2, ("gpu",)),
    ("estimate_mi data of the wrong shape", "vmivae.estimate_mi(run, path='reconstruction', data=torch.rand(64, 1, 7, 7), settings='smoke')",
     2, ("7",)),
    ("estimate_mi NaN data", "vmivae.estimate_mi(run, path='reconstruction', data=torch.full((64, 1, 28, 28), float('nan')), "
     "settings='smoke')", 2, ("nan",)),
    ("evaluate settings nosuch", "vmivae.evaluate(run, settings='nosuch')", 2, ("nosuch",)),
    ("evaluate paths nosuch", "vmivae.evaluate(run, settings='smoke', paths=('nosuch',))", 2, ("nosuch",)),
    ("evaluate paths a string", "vmivae.evaluate(run, settings='smoke', paths='generation')", (0, 2), ()),
    ("evaluate no paths", "vmivae.evaluate(run, settings='smoke', paths=())", 2, ("path",)),
    ("evaluate a number", "vmivae.evaluate(42, settings='smoke')", 2, ("42",)),
    ("evaluate a missing folder", "vmivae.evaluate(str(tmp / 'nope'), settings='smoke')", 2, ("nope",)),
    ("evaluate train a 1-D tensor", "vmivae.evaluate(run, train=torch.rand(3), settings='smoke')", 2, ("shape",)),
    ("evaluate test of NaN", "vmivae.evaluate(run, test=torch.full((64, 1, 28, 28), float('nan')), settings='smoke')", 2, ("nan",)),
    ("load_run device cuda", "vmivae.load_run(run, device='cuda')", 2, ("cuda",)),
    ("load_run a number", "vmivae.load_run(42)", 2, ("42",)),
    ("load_run a missing folder", "vmivae.load_run(tmp / 'nope')", 2, ("nope",)),
    ("make_config nosuch", "vmivae.make_config('nosuch')", 2, ("nosuch",)),
    ("make_config overrides a dict of bad type", "vmivae.make_config('paper-joint', 'smoke', {'steps': 'x'})", 2, ("steps",)),
    ("make_config overrides one string", "vmivae.make_config('paper-joint', 'smoke', 'steps=3')", (0, 2), ()),
    ("make_config profile None", "vmivae.make_config('paper-joint', None)", (0, 2), ()),
    ("resume steps -1", "vmivae.resume(run, steps=-1, progress=False)", 2, ("steps",)),
    ("resume a missing folder", "vmivae.resume(tmp / 'nope', progress=False)", 2, ("nope",)),
    ("fit out onto the run's checkpoint", "vmivae.fit(vmivae.make_config('paper-joint', 'smoke', ['steps=2']), out=run / 'checkpoint.pt', "
     "progress=False)", 2, ("checkpoint.pt",)),
    ("fit a config that is a dict", "vmivae.fit({'steps': 2}, progress=False)", 2, ("Config",)),
    ("fit out '~nosuchuserxyz/r'", "vmivae.fit(vmivae.make_config('paper-joint', 'smoke', ['steps=2']), out='~nosuchuserxyz/r', "
     "progress=False)", 2, ("nosuchuserxyz",)),
]


def api_cases() -> list[Case]:
    cases = [Case(f"fit(data={label})", "bad data", code=FIT.format(data=data), rc=rc, says=says, fixtures=(),
                  quick=label == "a meta tensor")
             for label, data, rc, says in DATA]
    cases[-1].code = "vmivae.fit(vmivae.make_config('paper-joint', 'smoke', ['steps=2', 'dataset=custom']), progress=False)"
    cases += [Case(label, "measuring api", code=code, rc=rc, says=says, fixtures=("run",) if "run" in code else ())
              for label, code, rc, says in MEASURE]
    return cases
