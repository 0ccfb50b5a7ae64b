// fcvm image ls | rm: the images fcvm has pulled.
#include <iomanip>
#include <iostream>

#include "cli/commands.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace fcvm::cli {

Command image_ls_command() {
  return {{"image", "ls"}, "list pulled images", [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("image ls options");
    desc.add_options()("json", "print JSON");
    auto vm = parse_command_line(ctx, "image ls [--json]", desc, {}, args);
    const auto images = check_engine(ctx.engine().images());
    if (vm.count("json")) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& i : images) {
        out.push_back({{"digest", i.digest}, {"refs", i.refs}, {"size", i.size_bytes},
                       {"pulled", i.pulled}, {"dir", i.dir}});
      }
      std::cout << out.dump(2) << "\n";
      return 0;
    }
    std::cout << std::left << std::setw(20) << "DIGEST" << std::setw(10) << "SIZE" << std::setw(22)
              << "PULLED" << "REFERENCES\n";
    for (const auto& i : images) {
      std::string refs;
      for (const auto& r : i.refs) refs += (refs.empty() ? "" : ", ") + r;
      std::cout << std::setw(20) << i.digest.substr(0, 19) << std::setw(10)
                << (std::to_string(i.size_bytes / (1024 * 1024)) + "MiB") << std::setw(22) << i.pulled
                << (refs.empty() ? "<none>" : refs) << "\n";
    }
    return 0;
  }};
}

Command image_rm_command() {
  return {{"image", "rm"}, "remove an image by reference or digest", [](CommandContext& ctx, const std::vector<std::string>& args) {
    po::options_description desc("image rm options");
    desc.add_options()("image", po::value<std::vector<std::string>>(), "references or digests");
    po::positional_options_description pos;
    pos.add("image", -1);
    auto vm = parse_command_line(ctx, "image rm IMAGE...", desc, pos, args);
    if (!vm.count("image")) throw CliError("image rm needs an image (see 'fcvm image ls')", kUsageExit);
    for (const auto& ref : vm["image"].as<std::vector<std::string>>()) {
      check_engine(ctx.engine().remove_image(ref));
      std::cout << ref << "\n";
    }
    return 0;
  }};
}

}  // namespace fcvm::cli
