"""The Kueue release this project builds, installs and targets (scripts/build-kueue reads the pin
from here), and the API version of its objects: the storage version that release serves."""

KUEUE_VERSION = "v0.17.0"
GROUP = "kueue.x-k8s.io"
VERSION = "v1beta2"
API_VERSION = f"{GROUP}/{VERSION}"
