import numpy as np
from PIL import Image

from diffusion_reward.evaluation.report import Report


def test_report_embeds_images_and_writes_both_formats(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "fig.png")
    r = Report("Demo")
    r.heading("Results")
    r.text("the **reward** prefers `expert`")
    r.image(tmp_path / "fig.png", "a figure")
    r.table(["model", "auroc"], [["diffusion", 0.93], ["motion", float("nan")]])
    md, html = r.write(tmp_path)
    page = html.read_text()
    assert "data:image/png;base64," in page and "<strong>reward</strong>" in page and "<td>0.93</td>" in page
    text = md.read_text()
    assert "![a figure](fig.png)" in text and "| diffusion | 0.93 |" in text and "| motion | – |" in text
