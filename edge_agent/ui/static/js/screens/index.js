// Every screen module, imported for its register() call. Add new screens here.
import "./home.js";
