"""
# Segmentation and detection

Explain a segmentation model for a class over a region (`SegmentationTarget`) and a
detector for one of its boxes (`BoxTarget`): Hugging Face SegFormer and DETR, as they
are. The guide: [Volumes and other tasks](../../guides/volumes-and-tasks.md#segmentation-detection-multi-label-and-regression);
the layers: [Which layer?](../../which-layer.md#segmentation-and-detection).

Both models are built from small configs with random weights (nothing is downloaded), so
their masks, boxes and maps mean nothing; for trained models replace
`...(config)` by `...from_pretrained(name)` and the inputs by images preprocessed with that
model's image processor, and keep the calls.
"""

# %%
# A small SegFormer (four stages of one block) and a photo at 128 x 128. Its logits are
# (N, classes, 32, 32), a quarter of the input's size.
import torch
from skimage import data
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from rsigradcam import GradCAM, RSIGradCAM, SegmentationTarget
from rsigradcam.io import load_image
from rsigradcam.viz import overlay

torch.manual_seed(0)
segformer = SegformerForSemanticSegmentation(SegformerConfig(
    depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_attention_heads=[1, 1, 1, 1],
    mlp_ratios=[2, 2, 2, 2], decoder_hidden_size=16, num_labels=3, initializer_range=0.3,
)).eval()
image, rgb = load_image(data.astronaut(), size=128)
with torch.no_grad():
    print("logits", tuple(segformer(image).logits.shape))

# %%
# The score: class 1's logit summed over a mask, here the image's upper-left quarter,
# given at the input's size (it is resized to the logits'). `decode_head.linear_fuse`,
# the fused decoder map, cuts the graph, so completeness holds there.
mask = torch.zeros(128, 128, dtype=torch.bool)
mask[:64, :64] = True
target = SegmentationTarget(1, mask)
seg_rsi = RSIGradCAM(segformer, "decode_head.linear_fuse", steps=32)(image, target)
seg_grad = GradCAM(segformer, "decode_head.linear_fuse")(image, target)
print(f"summed logit {float(seg_rsi.scores[0]):.3f}, "
      f"completeness error {float(seg_rsi.completeness_error[0]):.4f}")

# %%
# A small DETR with a Hugging Face ResNet backbone (`use_timm_backbone=False`), 5 queries
# and 3 labels; the output holds `logits` (N, 5, 3 + 1 "no object") and `pred_boxes`
# (N, 5, 4), (cx, cy, w, h) relative to the image.
from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

torch.manual_seed(0)
detr = DetrForObjectDetection(DetrConfig(
    use_timm_backbone=False,
    backbone_config=ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1],
        layer_type="basic", out_features=["stage4"],
    ),
    num_queries=5, d_model=16, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32,
    decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2, num_labels=3,
    init_std=0.3,
)).eval()
with torch.no_grad():
    out = detr(image)

# %%
# Explain the detector's most confident detection: its box in pixels (x0, y0, x1, y1) and
# its label. `BoxTarget` scores, at each path point, the predicted box of that label that
# best matches the box by IoU (0 below `iou_threshold`).
probs = out.logits.softmax(-1)[0, :, :-1]  # drop "no object"
query = int(probs.max(-1).values.argmax())
label = int(probs[query].argmax())
cx, cy, w, h = (out.pred_boxes[0, query] * 128).tolist()
box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
print(f"query {query}: label {label}, p = {float(probs[query, label]):.3f}, "
      f"box {[round(v, 1) for v in box]}")

from rsigradcam import BoxTarget

box_target = BoxTarget(box, label)
det_rsi = RSIGradCAM(detr, "model.input_projection", steps=32)(image, box_target)
det_grad = GradCAM(detr, "model.input_projection")(image, box_target)
print(f"box score {float(det_rsi.scores[0]):.3f}, at the baseline "
      f"{float(det_rsi.baseline_scores[0]):.3f}, completeness error "
      f"{float(det_rsi.completeness_error[0]):.4f}, layer map {tuple(det_rsi.layer_map.shape)}")

# %%
# The layer cuts the graph, yet the completeness error is large here: at the baseline (a
# black image) no box of this label overlaps the box enough, so the score is 0, and it
# jumps to the matched box's probability where the match first clears `iou_threshold`. A
# sum of gradients does not see a jump. SegFormer's score, a sum of logits, is smooth,
# and its error is small.

# %%
# The region and the box, and each method's map. With random weights the maps show where
# these weights respond, not where a person or an object is.
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

fig, axes = plt.subplots(2, 3, figsize=(8.5, 6), layout="constrained")
axes[0][0].imshow(rgb)
axes[0][0].add_patch(Rectangle((0, 0), 64, 64, fill=False, color="white", lw=2))
axes[0][0].set_title("SegFormer: class 1 over the mask", fontsize=9)
axes[1][0].imshow(rgb)
axes[1][0].add_patch(Rectangle((box[0], box[1]), w, h, fill=False, color="white", lw=2))
axes[1][0].set_title(f"DETR: label {label}, query {query}", fontsize=9)
for row, (grad, rsi) in enumerate(((seg_grad, seg_rsi), (det_grad, det_rsi))):
    axes[row][1].imshow(overlay(rgb, grad.heatmap[0]))
    axes[row][1].set_title("Grad-CAM", fontsize=9)
    axes[row][2].imshow(overlay(rgb, rsi.heatmap[0]))
    axes[row][2].set_title("RSI-Grad-CAM", fontsize=9)
for ax in axes.flat:
    ax.axis("off")
plt.show()
