#include "io/image_folder.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <sstream>

#include "core/error.hpp"
#include "core/fs.hpp"

namespace dsgq::io {
namespace fs = std::filesystem;
namespace {

// torchvision's IMG_EXTENSIONS (case-insensitive); dsgq decodes the JPEG and PNG among them.
bool is_image_name(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* ext : {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}) {
    const std::string e(ext);
    if (lower.size() > e.size() && lower.compare(lower.size() - e.size(), e.size(), e) == 0) return true;
  }
  return false;
}

bool is_wnid(const std::string& s) {
  if (s.size() != 9 || s[0] != 'n') return false;
  return std::all_of(s.begin() + 1, s.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> lines;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

std::map<std::string, int64_t> read_synsets(const std::string& path) {
  std::map<std::string, int64_t> index;
  const auto lines = lines_of(path);
  for (size_t i = 0; i < lines.size(); ++i) {
    std::istringstream ls(lines[i]);
    std::string wnid;
    if (!(ls >> wnid)) continue;
    if (!is_wnid(wnid))
      throw InputError(path + ":" + std::to_string(i + 1) + ": '" + wnid +
                       "' is not a WordNet id; expected '<wnid> <names>' lines (wnid = n + 8 digits)");
    if (!index.emplace(wnid, static_cast<int64_t>(index.size())).second)
      throw InputError(path + ":" + std::to_string(i + 1) + ": wnid '" + wnid + "' is listed twice");
  }
  if (index.empty()) throw InputError(path + ": holds no synsets; expected '<wnid> <names>' lines");
  return index;
}

ImageList list_flat(const std::string& dir, const std::string& labels_file, int64_t num_classes) {
  ImageList list;
  list.num_classes = num_classes;
  list.labels_from = "label file " + labels_file;
  std::map<std::string, size_t> seen;
  const auto lines = lines_of(labels_file);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string where = labels_file + ":" + std::to_string(i + 1);
    std::istringstream ls(lines[i]);
    std::string file, index_text;
    if (!(ls >> file)) continue;  // blank line
    if (!(ls >> index_text))
      throw InputError(where + ": '" + lines[i] + "' has no class index; expected '<file> <class index> [...]'");
    char* end = nullptr;
    const long long label = std::strtoll(index_text.c_str(), &end, 10);
    if (*end != '\0')
      throw InputError(where + ": class index '" + index_text +
                       "' is not an integer; expected '<file> <class index> [...]'");
    if (label < 0 || label >= num_classes)
      throw InputError(where + ": class index " + index_text + " is out of range; expected 0.." +
                       std::to_string(num_classes - 1));
    if (!file_exists((fs::path(dir) / file).string()))
      throw InputError(where + ": image '" + file + "' is not in " + dir);
    const auto [it, fresh] = seen.emplace(file, i + 1);
    if (!fresh)
      throw InputError(where + ": image '" + file + "' is listed twice (first on line " + std::to_string(it->second) +
                       ")");
    list.files.push_back(file);
    list.labels.push_back(label);
  }
  if (list.files.empty())
    throw InputError(labels_file + ": lists no images; expected '<file> <class index> [...]' lines");
  return list;
}

ImageList list_tree(const std::string& dir, const std::string& synsets_file, int64_t num_classes, int64_t per_class) {
  std::vector<std::string> classes;
  size_t loose_images = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory())
      classes.push_back(e.path().filename().string());
    else if (is_image_name(e.path().filename().string()))
      ++loose_images;
  }
  std::sort(classes.begin(), classes.end());
  if (classes.empty())
    throw InputError(dir + ": has no class folders" +
                     (loose_images
                          ? " but " + std::to_string(loose_images) + " images; for a flat folder pass --labels FILE"
                          : std::string("; expected <wnid>/<image> folders or a flat folder with --labels FILE")));
  for (const auto& c : classes)
    if (!is_wnid(c))
      throw InputError(
          (fs::path(dir) / c).string() + ": class folder '" + c +
          "' is not a WordNet id (n + 8 digits, e.g. n01440764); expected an ImageNet tree <wnid>/<image>");
  ImageList list;
  std::map<std::string, int64_t> index;
  if (!synsets_file.empty()) {
    index = read_synsets(synsets_file);
    list.labels_from = "synsets file " + synsets_file;
    list.num_classes = static_cast<int64_t>(index.size());
    for (const auto& c : classes)
      if (!index.count(c))
        throw InputError((fs::path(dir) / c).string() + ": wnid '" + c + "' is not in the synsets file " +
                         synsets_file);
  } else {
    for (const auto& c : classes) index.emplace(c, static_cast<int64_t>(index.size()));
    list.num_classes = static_cast<int64_t>(classes.size());
    list.labels_from = "sorted class folders (" + std::to_string(classes.size()) + ")";
  }
  if (list.num_classes > num_classes)
    throw InputError(dir + ": " + std::to_string(list.num_classes) + " classes; expected at most " +
                     std::to_string(num_classes));
  for (const auto& c : classes) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(fs::path(dir) / c))
      if (!e.is_directory() && is_image_name(e.path().filename().string()))
        files.push_back(e.path().filename().string());
    if (files.empty())
      throw InputError((fs::path(dir) / c).string() + ": class folder holds no images (.jpg/.jpeg/.png/...)");
    std::sort(files.begin(), files.end());
    if (per_class > 0 && static_cast<int64_t>(files.size()) > per_class) files.resize(static_cast<size_t>(per_class));
    for (const auto& f : files) {
      list.files.push_back(c + "/" + f);
      list.labels.push_back(index.at(c));
    }
  }
  return list;
}

}  // namespace

ImageList list_image_folder(const std::string& dir, const std::string& labels_file, const std::string& synsets_file,
                            int64_t num_classes, int64_t per_class) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError(dir + ": no such folder; expected the image folder (--images)");
  if (!labels_file.empty()) {
    if (per_class > 0)
      throw InputError("--per-class " + std::to_string(per_class) + " applies to a <wnid>/<image> tree; " + dir +
                       " is read as a flat folder with the label file " + labels_file);
    if (!synsets_file.empty()) {
      ImageList list = list_flat(dir, labels_file, static_cast<int64_t>(read_synsets(synsets_file).size()));
      return list;
    }
    return list_flat(dir, labels_file, num_classes);
  }
  return list_tree(dir, synsets_file, num_classes, per_class);
}

}  // namespace dsgq::io
