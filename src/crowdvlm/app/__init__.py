"""`crowdvlm app`: a web page to try a counting model.

:mod:`.uploads` (what a request may contain) and :mod:`.service` (counting with an eval backend) import no
gradio; :mod:`.ui` lays out the page; :mod:`.cli` loads the model once and serves it.
"""
