"""Run inside Blender (``blender -b --factory-startup --python blender_base_color.py -- GLB OUT.png CAMERA.json``):
import a GLB with Blender's own glTF importer and render its base colour pass from a given camera.

The base colour pass: the Principled BSDF's Base Color input (the image node the importer made, sRGB) is routed
to an emission shader, rendered by Cycles with a 1-pixel box filter and the Standard view transform, so the
PNG's pixels are the base colour texture's values as Blender samples them, with a transparent background.
CAMERA.json: {"c2w": 4x4 camera-to-world in the GLB's frame (OpenCV axes: x right, y down, z forward),
"focal": pixels, "resolution": pixels}.
"""

import json
import sys

import numpy

numpy.bool = bool  # Blender 3.4's glTF importer uses numpy.bool, removed in numpy >= 1.24

import bpy  # noqa: E402
from mathutils import Matrix  # noqa: E402


def _import(glb: str) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=glb)


def _base_colour_to_emission() -> int:
    """Route every material's Base Color (its image node) to an emission shader; returns how many were routed."""
    routed = 0
    for mat in bpy.data.materials:
        if not mat.use_nodes:
            continue
        nodes, links = mat.node_tree.nodes, mat.node_tree.links
        bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
        out = next((n for n in nodes if n.type == "OUTPUT_MATERIAL"), None)
        if bsdf is None or out is None or not bsdf.inputs["Base Color"].links:
            continue
        src = bsdf.inputs["Base Color"].links[0].from_socket
        emit = nodes.new("ShaderNodeEmission")
        emit.inputs["Strength"].default_value = 1.0
        links.new(src, emit.inputs["Color"])
        links.new(emit.outputs["Emission"], out.inputs["Surface"])
        routed += 1
    return routed


def _camera(spec: dict) -> None:
    """Our camera in Blender: glTF's Y-up frame becomes Blender's Z-up one (x, y, z) → (x, −z, y), and a Blender
    camera looks down its −Z with +Y up, i.e. OpenCV axes with y and z negated."""
    to_blender = Matrix(((1, 0, 0, 0), (0, 0, -1, 0), (0, 1, 0, 0), (0, 0, 0, 1)))
    flip = Matrix(((1, 0, 0, 0), (0, -1, 0, 0), (0, 0, -1, 0), (0, 0, 0, 1)))
    cam_data = bpy.data.cameras.new("cam")
    res = int(spec["resolution"])
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = 36.0
    cam_data.lens = float(spec["focal"]) / res * 36.0
    cam = bpy.data.objects.new("cam", cam_data)
    bpy.context.scene.collection.objects.link(cam)
    cam.matrix_world = to_blender @ Matrix(spec["c2w"]) @ flip
    bpy.context.scene.camera = cam


def _render(path: str, res: int) -> None:
    sc = bpy.context.scene
    sc.render.engine = "CYCLES"
    sc.cycles.device = "CPU"
    sc.cycles.samples = 64
    sc.cycles.use_denoising = False
    sc.cycles.pixel_filter_type = "BOX"
    sc.cycles.filter_width = 1.0
    sc.render.resolution_x = sc.render.resolution_y = res
    sc.render.resolution_percentage = 100
    sc.render.film_transparent = True
    sc.view_settings.view_transform = "Standard"
    sc.view_settings.look = "None"
    sc.view_settings.exposure = 0.0
    sc.view_settings.gamma = 1.0
    sc.render.image_settings.file_format = "PNG"
    sc.render.image_settings.color_mode = "RGBA"
    sc.render.filepath = path
    bpy.ops.render.render(write_still=True)


def main() -> None:
    glb, out, cam_json = sys.argv[sys.argv.index("--") + 1 :][:3]
    with open(cam_json) as f:
        spec = json.load(f)
    _import(glb)
    if _base_colour_to_emission() == 0:
        raise SystemExit("no material with a base colour texture in " + glb)
    _camera(spec)
    _render(out, int(spec["resolution"]))


main()
