"""Applications built on the library: the demo (apps.demo), the toy-sd prior's trainer (apps.toy_prior) and the
2-D image mode (apps.image2d). Apps may import anything below the CLI (render included); guidance may not.
"""
