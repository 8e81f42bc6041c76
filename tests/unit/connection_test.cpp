// Connection strings shown to people: the password never appears.
#include <doctest/doctest.h>

#include "depot/persistence/connection.hpp"

using depot::persistence::redact_password;

TEST_CASE("redact_password hides the password of a URI, a query parameter and a keyword") {
  CHECK(redact_password("postgresql://bob:s3cr%40t@db.example:5432/app?sslmode=require") ==
        "postgresql://bob:***@db.example:5432/app?sslmode=require");
  CHECK(redact_password("postgres://bob@db/app?password=s3cret&sslmode=disable") ==
        "postgres://bob@db/app?password=***&sslmode=disable");
  CHECK(redact_password("host=db user=bob password=s3cret dbname=app") ==
        "host=db user=bob password=*** dbname=app");
  CHECK(redact_password("host=db password='a b' dbname=app") == "host=db password=*** dbname=app");
}

TEST_CASE("redact_password leaves a connection string without a password as it is") {
  CHECK(redact_password("postgresql://postgres@127.0.0.1:5432/depot") ==
        "postgresql://postgres@127.0.0.1:5432/depot");
  CHECK(redact_password("postgresql:///depot?host=/run/pg") == "postgresql:///depot?host=/run/pg");
  CHECK(redact_password("host=db user=bob") == "host=db user=bob");
  CHECK(redact_password("") == "");
}
