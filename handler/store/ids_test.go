package store_test

// tenantA is the tenant the session tests sign users in to.
const tenantA = "72f988bf-86f1-41af-91ab-2d7cd011db47"
