#pragma once
// The images of an ImageNet-style folder and their labels, in the order `dsgq pack` writes them. Two layouts:
//   tree:  DIR/<wnid>/<image> (torchvision ImageFolder: class folders sorted, files sorted within each);
//   flat:  DIR/<image> plus a label file of lines "<file> <class index> [anything]" (e.g. imagenet_samples/
//          labels.txt), in the label file's order.
// Class indices of a tree come from a synsets file ("<wnid> <names>" per line, index = line number - 1: the
// 1000-class ImageNet order) when given, else from the sorted class folders present (ImageFolder's rule).
// Local, no torch.
#include <cstdint>
#include <string>
#include <vector>

namespace dsgq::io {

struct ImageList {
  std::vector<std::string> files;  // relative to the folder
  std::vector<int64_t> labels;
  int64_t num_classes = 0;
  std::string labels_from;  // how labels were assigned, for the file's attributes and the log
};

// Throws InputError naming the folder, file or line: a missing folder; a class folder that is not a wnid
// (n + 8 digits); a class folder with no images; a wnid missing from the synsets file; a label-file line that is
// malformed, names a missing image, repeats one, or has a class index outside 0..classes-1; no images at all.
// per_class > 0 (tree only): the first per_class images of each class (a calibration subset of train/).
ImageList list_image_folder(const std::string& dir, const std::string& labels_file, const std::string& synsets_file,
                            int64_t num_classes = 1000, int64_t per_class = 0);

}  // namespace dsgq::io
