"""Rewards-in-Context for images: reward-conditioned diffusion models (docs/METHOD.md section 7).

Score every training image with every reward, z-score the rewards, condition the model on them
(rounded to 1 decimal) together with the caption, drop the condition 10% of the time so
classifier-free guidance works, and at inference map preference weights to desired rewards.

One file per part:
- recipe.py: ImageRecipe (both backends) and the caption + tags conditioning;
- data.py: the skimage photographs and subjects (embedded), captioned folders (sd);
- rewards.py: image rewards by name (compliance, aesthetic_composite, compressibility, ...);
- classifier.py: the subject classifier behind `compliance`, shipped with the model;
- embedded.py: the small prompted UNet trained from scratch on a CPU (docs/IMAGE.md);
- sd.py: Stable Diffusion with LoRA (the paper's setting, needs the hub and a GPU);
- backends.py: BACKENDS, the registry from a recipe's `kind` to its backend;
- training.py: the resumable loop both backends share; train_image_model;
- sampling.py: SteerableImageModel, what the app and the evaluator drive;
- evaluation.py: the preference sweep, front.json and the sample grid.
"""
