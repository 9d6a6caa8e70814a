"""The Gradio app's parts: `text` (chat tab and API), `compare` (one prompt at several
preferences), `image` (the Image tab, /generate_image and the image model's loading),
`widgets` (sliders, triangle picker, front clicks, whole-reply tables), `loading` (models and
fronts), `auth` (logins). app.py at the repository root wires them together and is the
command-line entry."""
