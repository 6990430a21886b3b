"""The layout AIMET's torch loader reads (`aimet_torch.quantsim.load_encodings_to_sim` -> `QuantizationSimModel.
load_encodings(strict=True, partial=False)`, aimet_torch 1.22-1.34, the `<prefix>_torch.encodings` file; AIMET's
encoding specification, versions 0.6.1 / 1.0.0), written from AIMET's loader code and specification, not from dsgq's
writer. `problems(enc, model)` lists every way a file would fail that loader (or fall outside the specification) for
an AIMET-side torch model; an empty list means it loads.

The AIMET-side model is the reference network (models_ref) with its ReLUs as nn.ReLU modules named after the
activation sites (`relu`, `layer{s}.{i}.relu1`, `layer{s}.{i}.relu2` on the CIFAR ResNets), so that every key is a
module or parameter name of `model.named_modules()` / `named_parameters()`, as the strict loader requires.

Loader rules checked (aimet_torch/quantsim.py `_load_encodings_impl`, `_set_param_encodings`,
`_set_activation_encodings`; qc_quantize_op.py `import_param_encodings`, `_import_encoding`; utils.py
`create_encoding_from_dict`, `validate_is_symmetric_flag`):
- top level: `param_encodings` and `activation_encodings` are dicts, not both empty; `version` is 0.6.1 or 1.0.0;
- strict: every key names a module (activations) or a parameter (`<module>.weight`) of the model;
- a parameter entry is a list with one encoding per output channel (a per-channel sim; Linear included);
  no `.bias` entries (the sim configuration dsgq documents leaves bias unquantized, and strict loading refuses an
  encoding for a disabled quantizer);
- an activation entry is {"input"|"output": {"<index>": encoding}} with ONE encoding dict per index (not a list);
- every encoding has `bitwidth` (int), `dtype` "int", `is_symmetric` the string "False" (the asymmetric sim),
  `min`, `max`, `scale` > 0 and an integer `offset`, with min = offset * scale and max = min + scale * (2^bitwidth - 1)
  (AIMET's asymmetric rule; AIMET 2.x rebuilds scale and offset from min and max, so they must agree);
- the specification allows bitwidth 4..32: lower widths are reported separately (`low_bitwidth`), not as problems
  (the loader does not check them; dsgq documents them as outside the specification);
- AIMET's own ranges contain zero (offset in [-(2^k - 1), 0]); entries that do not are reported separately
  (`no_zero`): the loader takes them as they are.
"""
import math

import torch.nn as nn

REQUIRED = ("bitwidth", "dtype", "is_symmetric", "max", "min", "offset", "scale")


def _encoding_problems(where, e):
    out = []
    if not isinstance(e, dict):
        return [f"{where}: an encoding must be a dict, got {type(e).__name__}"]
    missing = [k for k in REQUIRED if k not in e]
    if missing:
        return [f"{where}: missing {missing}"]
    if not isinstance(e["bitwidth"], int) or isinstance(e["bitwidth"], bool):
        out.append(f"{where}: bitwidth {e['bitwidth']!r} is not an int")
    if e["dtype"] != "int":
        out.append(f"{where}: dtype {e['dtype']!r}, expected 'int'")
    if e["is_symmetric"] not in ("True", "False"):
        out.append(f"{where}: is_symmetric {e['is_symmetric']!r} is not the string 'True' or 'False'")
    elif e["is_symmetric"] != "False":
        out.append(f"{where}: is_symmetric 'True' does not match the asymmetric sim")
    if not isinstance(e["offset"], int) or isinstance(e["offset"], bool):
        out.append(f"{where}: offset {e['offset']!r} is not an int")
    if not (isinstance(e["scale"], (int, float)) and e["scale"] > 0):
        out.append(f"{where}: scale {e['scale']!r} is not > 0")
        return out
    s, o, k = float(e["scale"]), e["offset"], e["bitwidth"]
    lo, hi = o * s, (o + 2 ** k - 1) * s
    tol = 1e-9 * max(1.0, abs(lo), abs(hi))
    if abs(e["min"] - lo) > tol or abs(e["max"] - hi) > tol:
        out.append(f"{where}: min/max {e['min']!r}/{e['max']!r} disagree with offset*scale {lo!r} and "
                   f"min + scale*(2^{k} - 1) {hi!r}")
    return out


def problems(enc, model, site_names):
    """enc: the parsed JSON; model: the AIMET-side torch model (convs/linear as modules); site_names: the names of its
    ReLU modules. Returns (problems, low_bitwidth, no_zero): lists of strings."""
    out, low, no_zero = [], [], []
    if not isinstance(enc, dict):
        return ["the file is not a JSON object"], low, no_zero
    if str(enc.get("version")) not in ("0.6.1", "1.0.0"):
        out.append(f"version {enc.get('version')!r}, expected '0.6.1' or '1.0.0'")
    params, acts = enc.get("param_encodings"), enc.get("activation_encodings")
    if not isinstance(params, dict) or not isinstance(acts, dict):
        return out + ["param_encodings and activation_encodings must both be JSON objects"], low, no_zero
    if not params and not acts:
        out.append("both param_encodings and activation_encodings are empty (the loader raises)")
    modules = dict(model.named_modules())
    modules.update({n: None for n in site_names})
    parameters = dict(model.named_parameters())

    def note(where, e):
        if isinstance(e, dict) and isinstance(e.get("bitwidth"), int):
            if e["bitwidth"] < 4:
                low.append(f"{where}: {e['bitwidth']} bits")
            if isinstance(e.get("offset"), int) and not (-(2 ** e["bitwidth"] - 1) <= e["offset"] <= 0):
                no_zero.append(f"{where}: offset {e['offset']}")

    for key, entries in params.items():
        if key not in parameters:
            out.append(f"param_encodings['{key}']: not a parameter of the model (strict loading raises)")
            continue
        if not key.endswith(".weight"):
            out.append(f"param_encodings['{key}']: only weights are quantized in the documented sim")
            continue
        mod = modules.get(key[: -len(".weight")])
        if not isinstance(mod, (nn.Conv2d, nn.Linear)):
            out.append(f"param_encodings['{key}']: not a Conv2d/Linear weight")
            continue
        channels = parameters[key].shape[0]
        if not isinstance(entries, list) or len(entries) != channels:
            n = len(entries) if isinstance(entries, list) else type(entries).__name__
            out.append(f"param_encodings['{key}']: {n} encodings, expected a list of {channels} (one per output "
                       f"channel; the loader raises 'Invalid PerChannel encodings')")
            continue
        for c, e in enumerate(entries):
            out += _encoding_problems(f"param_encodings['{key}'][{c}]", e)
            note(f"{key}[{c}]", e)
    for key, node in acts.items():
        if key not in modules:
            out.append(f"activation_encodings['{key}']: not a module of the model (strict loading raises)")
            continue
        if not isinstance(node, dict) or not node or set(node) - {"input", "output"}:
            out.append(f"activation_encodings['{key}']: expected {{'input'|'output': {{'<index>': encoding}}}}, "
                       f"got {type(node).__name__} {list(node) if isinstance(node, dict) else ''}")
            continue
        for side, per_index in node.items():
            if not isinstance(per_index, dict) or not all(i.isdigit() for i in per_index):
                out.append(f"activation_encodings['{key}']['{side}']: expected a dict keyed by index strings")
                continue
            for i, e in per_index.items():
                out += _encoding_problems(f"activation_encodings['{key}']['{side}']['{i}']", e)
                note(f"{key}.{side}[{i}]", e)
    return out, low, no_zero


def resnet_cifar_sites(depth):
    """The ReLU module names of the AIMET-side CIFAR ResNet (dsgq's activation sites)."""
    n = (depth - 2) // 6
    return ["relu"] + [f"layer{s}.{i}.relu{j}" for s in (1, 2, 3) for i in range(n) for j in (1, 2)]


def check_file(check, label, enc, model, site_names):
    """One ok/FAIL line for the layout, plus info lines for the low-bit and zero-excluding entries."""
    probs, low, no_zero = problems(enc, model, site_names)
    n_params = len(enc.get("param_encodings", {})) if isinstance(enc, dict) else 0
    n_acts = len(enc.get("activation_encodings", {})) if isinstance(enc, dict) else 0
    check(not probs, f"{label}: encodings follow AIMET's torch layout key for key ({n_params} weights, {n_acts} "
                     f"activation modules)" + (f"; problems: {probs[:5]}" + (" ..." if len(probs) > 5 else "")
                                               if probs else ""))
    if low:
        print(f"info {label}: {len(low)} entries below AIMET's 4-bit minimum (dsgq's documented extension), e.g. "
              f"{low[:2]}", flush=True)
    if no_zero:
        print(f"info {label}: {len(no_zero)} entries whose range excludes zero (loaded as they are), e.g. "
              f"{no_zero[:2]}", flush=True)
    return probs


def _selfcheck():
    """The fixture the rules were written from (a conv + relu model) loads; each single violation is caught."""
    import copy
    m = nn.Sequential()
    m.add_module("conv1", nn.Conv2d(3, 2, 3, padding=1))
    m.add_module("relu", nn.ReLU())
    good = {"version": "0.6.1",
            "activation_encodings": {"relu": {"output": {"0": {"bitwidth": 4, "dtype": "int", "is_symmetric": "False",
                                                               "min": 0.0, "max": 3.0, "offset": 0, "scale": 0.2}}}},
            "param_encodings": {"conv1.weight": [
                {"bitwidth": 4, "dtype": "int", "is_symmetric": "False", "min": -0.30, "max": 0.45, "offset": -6,
                 "scale": 0.05},
                {"bitwidth": 4, "dtype": "int", "is_symmetric": "False", "min": -0.12, "max": 0.18, "offset": -6,
                 "scale": 0.02}]},
            "excluded_layers": []}
    assert problems(good, m, [])[0] == [], problems(good, m, [])
    bad = []
    e = copy.deepcopy(good); e["activation_encodings"]["relu"] = [good["activation_encodings"]["relu"]["output"]["0"]]
    bad.append(e)                                                           # the list form dsgq used to write
    e = copy.deepcopy(good); e["activation_encodings"]["relu1"] = e["activation_encodings"].pop("relu"); bad.append(e)
    e = copy.deepcopy(good); e["param_encodings"]["conv1.weight"].pop(); bad.append(e)       # per-tensor list
    e = copy.deepcopy(good); e["param_encodings"]["conv1.bias"] = e["param_encodings"]["conv1.weight"]; bad.append(e)
    e = copy.deepcopy(good); e["param_encodings"]["conv1.weight"][0]["is_symmetric"] = False; bad.append(e)
    e = copy.deepcopy(good); e["param_encodings"]["conv1.weight"][0]["max"] = 0.5; bad.append(e)
    e = copy.deepcopy(good); del e["param_encodings"]["conv1.weight"][1]["dtype"]; bad.append(e)
    e = copy.deepcopy(good); e["version"] = "0.4.0"; bad.append(e)
    for k, b in enumerate(bad):
        assert problems(b, m, [])[0], f"violation {k} not caught"
    print("aimet_layout selfcheck: the fixture loads; 8 single violations caught")


if __name__ == "__main__":
    _selfcheck()
