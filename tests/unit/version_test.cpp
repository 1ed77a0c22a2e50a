// The version the library reports is the one project() declares in the
// top CMakeLists.txt, read here from the source as text: a library built
// with a stale or hand-written version fails.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "snapmgr/version.hpp"

TEST(Version, LibraryReportsTheVersionTheProjectDeclares)
{
	std::ifstream in(SNAPMGR_SOURCE_DIR "/CMakeLists.txt");
	ASSERT_TRUE(in) << "cannot read " SNAPMGR_SOURCE_DIR "/CMakeLists.txt";
	std::stringstream text;
	text << in.rdbuf();
	const std::string cmake = text.str();
	std::smatch m;
	const std::regex declared(R"(project\(snapmgr VERSION ([0-9]+\.[0-9]+\.[0-9]+))");
	ASSERT_TRUE(std::regex_search(cmake, m, declared)) << "no project(snapmgr VERSION x.y.z)";
	EXPECT_EQ(snapmgr::version(), m[1].str());
}
