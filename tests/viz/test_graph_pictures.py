"""Network diagrams: golden structure (not pixels) of the DOT, SVG and HTML, and real PNGs."""

from __future__ import annotations

import itertools
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from netspec import api
from netspec.cli import main
from netspec.errors import Diagnostic
from netspec.ir import Analysis
from netspec.viz import diagram
from netspec.viz.dot import to_dot
from netspec.viz.draw import write_graph
from netspec.viz.layout import layout

ROOT = Path(__file__).resolve().parent.parent.parent

RESIDUAL = """
block Basic(ch: int) {
  conv2d(ch, 3, padding=1, bias=false) batchnorm relu
  conv2d(ch, 3, padding=1, bias=false) batchnorm
  add(in) relu
}
network Res {
  input x: [8, 16, 16]
  stage = Basic(8)
  flatten
  dense(10)
}
"""


def analysed(spec: str) -> tuple[Analysis, list[Diagnostic]]:
    return api.analyse_network(api.load(ROOT / "specs" / f"{spec}.net"))


def dot_edges(text: str) -> list[tuple[str, str, str]]:
    found = re.findall(r'^\s*"([^"]+)" -> "([^"]+)"(?: \[label="([^"]*)"\])?;', text, re.M)
    return [(a, b, c) for a, b, c in found]


def dot_labels(text: str) -> dict[str, str]:
    return dict(re.findall(r'^\s*"([^"]+)" \[label="([^"]*)"', text, re.M))


def test_lenet5_dot_is_one_box_per_layer_in_a_chain_with_shapes_on_the_edges() -> None:
    a, diags = analysed("lenet5")
    text = to_dot(diagram.build(a, diags))
    labels = dot_labels(text)
    layers = [n.name for n in a.network.nodes]
    assert [k for k in labels if not k.startswith("output:")] == layers
    assert labels["c1"] == r"conv2d(6, 5)\nc1"
    assert labels["s2"] == r"avgpool2d(2)\ns2"
    assert labels["image"] == r"input [1, 32, 32]\nimage"
    chain = list(itertools.pairwise(layers))
    edges = dot_edges(text)
    assert [(s, d) for s, d, _ in edges[:-1]] == chain
    assert ("c1", "tanh_1", "[6, 28, 28]") in edges
    assert ("s4", "flatten_1", "[16, 5, 5]") in edges
    assert edges[-1] == ("output", "output:0", "[10]")
    assert "subgraph" not in text


def test_residual_block_dot_is_a_cluster_with_the_shortcut_into_the_add(tmp_path: Path) -> None:
    path = tmp_path / "res.net"
    path.write_text(RESIDUAL, encoding="utf-8")
    a, diags = api.analyse_network(api.load(path))
    expanded = to_dot(diagram.build(a, diags, depth=1))
    assert 'subgraph "cluster_stage" {' in expanded
    assert ("x", "stage.add_1", "[8, 16, 16]") in dot_edges(expanded)
    assert ("stage.batchnorm_2", "stage.add_1", "[8, 16, 16]") in dot_edges(expanded)
    collapsed = to_dot(diagram.build(a, diags, depth=0))
    assert "subgraph" not in collapsed
    params = sum(i.params for n, i in a.layers.items() if n.startswith("stage."))
    assert dot_labels(collapsed)["stage"] == rf"stage\n7 layers · {diagram.human(params)} params"
    assert ("x", "stage", "[8, 16, 16]") in dot_edges(collapsed)
    assert ("stage", "flatten_1", "[8, 16, 16]") in dot_edges(collapsed)


def test_layout_keeps_a_chain_in_one_column_and_moves_a_side_branch_right() -> None:
    a, _ = analysed("resnet18")
    net = a.network
    place, edges = layout(net, {n.name: n.name for n in net.nodes})
    main_path = ["conv1", "bn1", "relu_1", "maxpool", "layer1.0.conv1", "layer1.0.add_1"]
    assert {place[n][1] for n in main_path} == {0}
    assert [place[n][0] for n in main_path[:5]] == [1, 2, 3, 4, 5]
    assert place["layer2.0.downsample.0"] == (place["layer2.0.conv1"][0], 1)
    assert ("maxpool", "layer1.0.add_1", "maxpool") in edges


def test_resnet152_is_collapsed_to_its_four_stages_by_default() -> None:
    a, diags = analysed("resnet152")
    d = diagram.build(a, diags)
    stages = [b for b in d.boxes.values() if b.category == "block"]
    assert [b.name for b in stages] == ["layer1", "layer2", "layer3", "layer4"]
    assert stages[2].subtitle.startswith("36 blocks · 362 layers")
    assert len(d.boxes) <= diagram.READABLE_BOXES
    assert d.max_depth == 2


def test_svg_is_well_formed_and_html_is_one_self_contained_page(tmp_path: Path) -> None:
    a, diags = analysed("googlenet")
    write_graph(a, diags, tmp_path / "g.svg")
    write_graph(a, diags, tmp_path / "g.html")
    root = ET.parse(tmp_path / "g.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert any(t.text == "inception4c" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    page = (tmp_path / "g.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://|\bsrc=|<link|@import", page)
    assert page.count("<svg") == 1
    assert "<td>inception4c.branch2.1.conv</td>" in page  # the table lists every layer
    assert "[1024, 7, 7]" in page  # shapes on the edges


def test_a_failing_layer_is_drawn_red_with_its_message(tmp_path: Path) -> None:
    spec = ROOT / "tests" / "diagnostics" / "add_channel_mismatch.net"
    out = tmp_path / "bad.svg"
    assert main(["graph", str(spec), "-o", str(out)]) == 1
    svg = out.read_text(encoding="utf-8")
    assert re.search(r'<rect [^>]*fill="#ffebee" stroke="#c62828"[^>]*><title>stage.add_1', svg)
    assert "channel mismatch" in svg or "needs equal shapes" in svg


@pytest.mark.parametrize(
    ("spec", "tall"), [("lenet5", True), ("googlenet", True), ("resnet50", True)]
)
def test_pngs_are_drawn_without_graphviz_at_a_sensible_size(
    tmp_path: Path, spec: str, tall: bool
) -> None:
    out = tmp_path / f"{spec}.png"
    assert main(["graph", str(ROOT / "specs" / f"{spec}.net"), "-o", str(out)]) == 0
    with Image.open(out) as im:
        w, h = im.size
        colors = im.convert("L").getextrema()
    assert 300 < w < 4000 and 600 < h < 12000
    assert (h > w) is tall  # a deep network reads top to bottom
    assert colors[0] < 60 and colors[1] == 255  # dark text on a white page


def test_engine_dot_uses_graphviz_or_says_it_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lenet.svg"
    code = main(["graph", str(ROOT / "specs" / "lenet5.net"), "-o", str(out), "--engine", "dot"])
    if shutil.which("dot") is None:
        assert code == 3
        err = capsys.readouterr().err
        assert "Graphviz" in err and "Traceback" not in err
        assert not out.exists()
    else:
        assert code == 0
        assert ET.parse(out).getroot().tag.endswith("svg")


def test_an_unknown_picture_format_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["graph", str(ROOT / "specs" / "lenet5.net"), "-o", str(tmp_path / "n.jpg")])
    assert code == 2
    assert ".svg" in capsys.readouterr().err
