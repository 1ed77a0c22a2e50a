#include <gtest/gtest.h>

#include "snapmgr/version.hpp"

TEST(Version, LibraryReportsTheProjectVersion)
{
	EXPECT_EQ(snapmgr::version(), PROJECT_VERSION);
}
