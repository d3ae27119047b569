#include "fake_pq.hpp"
