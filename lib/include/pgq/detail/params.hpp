// pgq/detail/params.hpp - pgq's internal names of the public <pgq/params.hpp>
// (`detail::param_set` is `pgq::params`), kept so that code written before
// the type went public still builds.
#pragma once

#include <pgq/params.hpp>
