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

    at = open_page(PAGE, cnn_view_model=cnn.id, cnn_conv_layer=1, cnn_conv_1_map=3, cnn_conv_1_row=12,
                   cnn_conv_1_col=9)
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
    row, col = divmod(int(conv2[0].argmax()), 11)  # it opens where map 0 is strongest
    assert metrics(at)["The convolution's number"] == f"{float(conv2[10, row, col]):.4f}"
    shares = plot_array(chart_spec(at, "Each of the 32 input channels' share: its 3x3 sum of products")["data"][0]["y"])
    assert len(shares) == 32
    assert abs(float(shares.sum()) + float(model.conv_layers[3].bias[10].detach()) - float(conv2[10, row, col])) < 1e-4
