#!/bin/sh
# Make Fashion-MNIST available: Debian's dataset-fashion-mnist package when apt is
# there (the original idx files in /usr/share/datasets/fashion-mnist), torchvision's
# download into ~/.cache/cnnzoo otherwise, and a clear message when neither works.
DEBIAN_DIR=/usr/share/datasets/fashion-mnist
PYTHON=${PYTHON:-python3}

have_debian_files() {
    [ -f "$DEBIAN_DIR/train-images-idx3-ubyte.gz" ] && [ -f "$DEBIAN_DIR/t10k-labels-idx1-ubyte.gz" ]
}

if have_debian_files; then
    echo "Fashion-MNIST: $DEBIAN_DIR"
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist package"
    if $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
       { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }; then
        have_debian_files && { echo "Fashion-MNIST: $DEBIAN_DIR"; exit 0; }
    fi
    echo "Fashion-MNIST: apt-get could not install dataset-fashion-mnist; trying torchvision's download"
fi
if "$PYTHON" -c "from cnnzoo.data import load_dataset; b = load_dataset('fashion-mnist', download=True); print('Fashion-MNIST:', len(b.train) + (len(b.val) if b.val is not None else 0), 'training images')"; then
    exit 0
fi
echo "Fashion-MNIST is not available: install Debian's dataset-fashion-mnist package, or go online so torchvision can download it, or pass --data-dir with the idx files." >&2
exit 1
