// Symbol visibility for the SDK. Plugins are built with -fvisibility=hidden; the SDK's
// types keep default visibility so their type_info and vtables are one across the boundary.
#pragma once

#define FCVM_SDK_API __attribute__((visibility("default")))
