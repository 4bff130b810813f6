#undef PARAMS_BEGIN
#undef FIELD
#undef PARAMS_END
