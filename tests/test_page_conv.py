"""A convolution's arithmetic on the CNN page: every number the page shows is the model's own."""

from pathlib import Path

import torch
from pagetools import chart_spec, metrics, open_page, plot_array

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "4_CNN.py")


def test_the_shown_arithmetic_is_the_layers_own_output(mnist, trained):
    from digitlab.explore import first_index_of
    from digitlab.store import ModelStore
    from digitlab.train import prepare

    cnn = trained["cnn"]
    model, info = ModelStore().load(cnn.id)
    image = mnist.test_images[first_index_of(mnist.test_labels, 7, 0)]  # the page's first test image: the first 7
    with torch.inference_mode():  # the model's own layers, run here: conv, ReLU, pool, conv, ReLU, pool
        outputs, x = [], prepare(image.unsqueeze(0), info.config)
        for module in model.eval().conv_layers:
            x = module(x)
            outputs.append(x[0])
    conv1, relu1, pool1, conv2 = outputs[0], outputs[1], outputs[2], outputs[3]

    at = open_page(PAGE, cnn_view_model=cnn.id, cnn_conv_open=True, cnn_conv_layer=1, cnn_conv_1_map=3,
                   cnn_conv_1_row=12, cnn_conv_1_col=9)
    assert not at.exception and not at.error
    shown = metrics(at)
    assert shown["The convolution's number"] == f"{float(conv1[3, 12, 9]):.4f}"
    assert shown["1. After ReLU"] == f"{float(relu1[3, 12, 9]):.4f}"  # cnn-seed: conv, ReLU, pool
    assert shown["2. After max-pool"] == f"{float(pool1[3, 6, 4]):.4f}"
    patch = plot_array(chart_spec(at, "The input patch")["data"][0]["z"])
    assert torch.allclose(patch, prepare(image.unsqueeze(0), info.config)[0, 0, 12:15, 9:12])
    kernel = plot_array(chart_spec(at, "The kernel")["data"][0]["z"])
    assert torch.allclose(kernel, model.conv_layers[0].weight[3, 0].detach())

    # the second convolution reads 32 maps: each channel's share, the largest first, adds up to the same number
    at.selectbox(key="cnn_conv_layer").set_value(2).run()
    at.number_input(key="cnn_conv_2_map").set_value(10).run()
    assert not at.exception
    row, col = divmod(int(conv2[10].argmax()), 11)  # a new map opens where it is strongest (here: over the digit)
    assert (at.number_input(key="cnn_conv_2_row").value, at.number_input(key="cnn_conv_2_col").value) == (row, col)
    assert metrics(at)["The convolution's number"] == f"{float(conv2[10, row, col]):.4f}"
    shares = plot_array(chart_spec(at, "Each of the 32 input channels' share: its 3x3 sum of products")["data"][0]["y"])
    assert len(shares) == 32
    assert abs(float(shares.sum()) + float(model.conv_layers[3].bias[10].detach()) - float(conv2[10, row, col])) < 1e-4


def test_the_maps_name_their_own_numbers_and_the_section_opens_on_the_digit(mnist, trained):
    """Hover names the true map, row and column; the worked-out number starts on the strongest number over the
    digit, never on a flat patch of paper where every product is the same."""
    from digitlab.explore import first_index_of
    from digitlab.store import ModelStore
    from digitlab.train import prepare

    cnn = trained["cnn"]
    model, info = ModelStore().load(cnn.id)
    image = mnist.test_images[first_index_of(mnist.test_labels, 7, 0)]
    x = prepare(image.unsqueeze(0), info.config)
    with torch.inference_mode():
        conv1 = model.eval().conv_layers[0](x)[0]  # [32, 26, 26]
    at = open_page(PAGE, cnn_view_model=cnn.id, cnn_conv_open=True)
    assert not at.exception and not at.error
    spec = chart_spec(at, "After conv_layers.0 · Conv2d: 32 maps of 26x26")
    points = spec["data"][1]  # the markers a click selects, one per number
    custom, values = plot_array(points["customdata"]), plot_array(points["marker"]["color"])
    assert len(custom) == len(values) == 32 * 26 * 26
    assert float(custom[:, 0].max()) == 31 and float(custom[:, 1].max()) == 25 and float(custom[:, 2].max()) == 25
    for (m, r, c), v in zip(custom[:: 997].tolist(), values[:: 997].tolist(), strict=True):
        assert abs(float(conv1[int(m), int(r), int(c)]) - v) < 1e-3  # what hover says of a number is its own
    assert "row %{customdata[1]}, column %{customdata[2]}" in points["hovertemplate"]
    assert "%{marker.color:.3f}" in points["hovertemplate"]

    m, r, c = (at.number_input(key=f"cnn_conv_1_{k}").value for k in ("map", "row", "col"))
    patch = x[0, 0, r : r + 3, c : c + 3]
    assert float(patch.max() - patch.min()) > 0  # not flat paper: the products differ
    on_digit = torch.nn.functional.unfold(x, 3)[0].std(dim=0).reshape(26, 26) > 0
    assert float(conv1[m, r, c]) == float(conv1.masked_fill(~on_digit, -1e9).max())  # the strongest there is
    assert metrics(at)["The convolution's number"] == f"{float(conv1[m, r, c]):.4f}"
    assert any(f"conv 1, map {m}, row {r}, column {c}" in md.value for md in at.caption)
    outline = [s for s in spec["layout"]["shapes"]]
    assert len(outline) == 2  # the number and its map, outlined
